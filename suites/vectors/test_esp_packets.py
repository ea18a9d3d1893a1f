"""Complete ESP packets as known answers (vectors/esp/): build each with its IV and padding, parse each, and drop each negative one for its stated reason."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import PacketDropped
from harness.esp import DROP_REASONS, EspCodec, Faults, Receiver, SaDatabase, SecurityAssociation, Sender
from harness.esp.esp import DEFAULT_PADDING
from harness.esp.ip import IPPROTO_ESP, ipv4_header
from harness.vectors import Record, as_params, load_all, unhex

RECORDS = load_all(["esp"])
VALID = [r for r in RECORDS if r["valid"]]
PAYLOADS = [r for r in VALID if r["op"] == "esp_packet"]
IP_PACKETS = [r for r in VALID if r["op"] == "esp_ip_packet"]
NEGATIVE = [r for r in RECORDS if not r["valid"]]
SRC, DST = "198.18.0.1", "198.18.0.2"  # outer addresses for vectors that are ESP payloads only


def _sa(r: Record, spi: int | None = None) -> SecurityAssociation:
    return SecurityAssociation("esp", int(r["spi"], 16) if spi is None else spi, r.get("src", SRC), r.get("dst", DST),
                               r.get("mode", "transport"), r["encryption"], unhex(r, "encryption_key"),
                               r.get("integrity"), bytes.fromhex(r.get("integrity_key", "")), esn=r["esn"])


def _receiver(r: Record) -> Receiver:
    spi = int(r["receiver_spi"], 16) if "receiver_spi" in r else None
    rx = Receiver(_sa(r, spi), window=r.get("window_size", 64))
    seq = int(r["seq"], 16)
    rx.window.top = int(r["window_top"], 16) if "window_top" in r else seq - 1
    for s in r.get("window_seen", []):
        rx.window.accept(int(s, 16))
    return rx


def _outer(r: Record) -> bytes:
    packet = unhex(r, "packet")
    if r["op"] == "esp_ip_packet":
        return packet
    return ipv4_header(bytes([198, 18, 0, 1]), bytes([198, 18, 0, 2]), IPPROTO_ESP, len(packet)) + packet


def test_vector_files_hold_the_expected_cases() -> None:
    """All 14 draft-mcgrew-gcm-test-01 packets, RFC 3602 case 5 and RFC 7634 Appendix A, plus negatives for each drop reason."""
    ids = {r["id"] for r in RECORDS}
    assert {f"gcm-test-01-case{i:02d}" for i in range(1, 15)} <= ids
    assert {"rfc3602-case5-transport-icmp", "rfc7634-appA-esp-tunnel"} <= ids
    assert {r["expected_drop"] for r in NEGATIVE} >= {"bad_icv", "replayed", "too_old", "unknown_spi", "bad_padding", "malformed"}
    assert any(r["esn"] for r in PAYLOADS) and any(not r["esn"] for r in PAYLOADS)


@pytest.mark.parametrize("r", as_params(PAYLOADS))
def test_build_esp_packet(r: Record) -> None:
    codec = EspCodec(_sa(r))
    seq, padding = int(r["seq"], 16), unhex(r, "padding")
    built = codec.seal(seq, unhex(r, "payload"), r["next_header"], iv=unhex(r, "iv"), padding=padding)
    assert built.hex() == r["packet"]
    if padding == DEFAULT_PADDING[len(padding)] and len(padding) == -(len(unhex(r, "payload")) + 2) % 4:
        assert codec.seal(seq, unhex(r, "payload"), r["next_header"], iv=unhex(r, "iv")).hex() == r["packet"]


@pytest.mark.parametrize("r", as_params(PAYLOADS))
def test_parse_esp_packet(r: Record) -> None:
    seq = int(r["seq"], 16)
    opened = EspCodec(_sa(r)).open(unhex(r, "packet"), seq)
    assert (opened.payload.hex(), opened.next_header, opened.pad_length) == (r["payload"], r["next_header"], len(r["padding"]) // 2)
    rx = _receiver(r)
    res = rx.unprotect(_outer(r))
    assert res.inner[20:].hex() == r["payload"] and res.next_header == r["next_header"] and res.seq == seq
    assert rx.window.top == seq and sum(rx.counters.values()) == 0


@pytest.mark.parametrize("r", as_params(IP_PACKETS))
def test_build_and_parse_ip_packet(r: Record) -> None:
    sa = _sa(r)
    iv = unhex(r, "iv")
    tx = Sender(sa, seq=int(r["seq"], 16), random=lambda n: iv)
    assert tx.protect(unhex(r, "inner"), Faults(padding=unhex(r, "padding"))).hex() == r["packet"]
    res = _receiver(r).unprotect(unhex(r, "packet"))
    assert res.inner.hex() == r["inner"] and res.next_header == r["next_header"]


@pytest.mark.rfc(4303, "3.4", "MUST")
@pytest.mark.parametrize("r", as_params(NEGATIVE))
def test_negative_vector_is_dropped(r: Record) -> None:
    rx = _receiver(r)
    outer = bytearray(_outer(r))
    before = bytes(outer)
    top = rx.window.top
    with pytest.raises(PacketDropped) as e:
        rx.unprotect(outer)
    assert e.value.reason == r["expected_drop"]
    assert rx.counters == {k: int(k == r["expected_drop"]) for k in DROP_REASONS}
    assert bytes(outer) == before and rx.window.top == top  # input untouched, window not moved


CAPTURES = Path(__file__).resolve().parents[2] / "vectors" / "captures"


def _captures() -> list[str]:
    try:
        return sorted(json.loads((CAPTURES / "manifest.json").read_text())["captures"])
    except (OSError, ValueError, KeyError):
        return []


@pytest.mark.parametrize("name", _captures())
def test_kernel_captures_verify_with_the_builtin_receiver(name: str) -> None:
    """Linux-made ESP/AH (vectors/captures, a second implementation): every packet passes the built-in receiver.

    Fragmented captures must be reassembled first (RFC 4303 s3.4.1): the receiver drops each
    fragment as malformed, naming the field.
    """
    from harness.keys import load_keys
    from harness.tools.pcapio import ip_of, read_capture

    entry = json.loads((CAPTURES / "manifest.json").read_text())["captures"][name]
    db = SaDatabase()
    for k in load_keys(CAPTURES / entry["keys"]).ipsec_sas:
        db.add(SecurityAssociation.from_keys(k, udp_encap=(4500, 4500) if "udpencap" in name else None), window=1024)
    ips = [s[1] for s in (ip_of(p) for p in read_capture(CAPTURES / entry["file"])) if s is not None]
    assert ips
    for ip in ips:
        if "fragmented" in name:
            with pytest.raises(PacketDropped) as e:
                db.unprotect(ip)
            assert e.value.reason == "malformed" and e.value.field == "flags/fragment offset"
        else:
            assert db.unprotect(ip).inner[0] >> 4 in (4, 6)
    assert sum(rx.accepted for rx in db.receivers.values()) == (0 if "fragmented" in name else len(ips))


AH_RECORDS = load_all(["ah"])


def _ah_sa(r: Record) -> SecurityAssociation:
    return SecurityAssociation("ah", int(r["spi"], 16), r["src"], r["dst"], r["mode"], integrity=r["integrity"],
                               integrity_key=unhex(r, "integrity_key"), esn=r["esn"], ah_align=r["ah_align"])


@pytest.mark.parametrize("r", as_params([r for r in AH_RECORDS if r["valid"] and "inner" in r]))
def test_build_and_parse_linux_ah_packet(r: Record) -> None:
    """Linux-made AH rebuilt byte for byte from the inner packet (HMAC is deterministic) and verified."""
    sa, seq = _ah_sa(r), int(r["seq"], 16)
    assert Sender(sa, seq=seq).protect(unhex(r, "inner"), Faults(padding=unhex(r, "icv_padding"))).hex() == r["packet"]
    rx = Receiver(sa)
    rx.window.top = seq - 1
    assert rx.unprotect(unhex(r, "packet")).inner.hex() == r["inner"]


@pytest.mark.rfc(4302, "3.3.3.1.1.1", "MUST")
@pytest.mark.parametrize("r", as_params([r for r in AH_RECORDS if r["valid"] and "inner_payload" in r]))
def test_mutable_fields_changed_in_transit_still_verify(r: Record) -> None:
    rx = Receiver(_ah_sa(r))
    res = rx.unprotect(unhex(r, "packet"))
    assert res.inner[20:].hex() == r["inner_payload"] and res.inner[8] == unhex(r, "packet")[8]


@pytest.mark.rfc(4302, "3.4.4", "MUST")
@pytest.mark.parametrize("r", as_params([r for r in AH_RECORDS if not r["valid"]]))
def test_negative_ah_vector_is_dropped(r: Record) -> None:
    rx = Receiver(_ah_sa(r))
    with pytest.raises(PacketDropped) as e:
        rx.unprotect(unhex(r, "packet"))
    assert e.value.reason == r["expected_drop"] and rx.counters[r["expected_drop"]] == 1 and rx.window.top == 0
