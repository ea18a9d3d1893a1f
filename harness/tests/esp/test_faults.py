"""Every fault knob of Faults produces the matching drop on the receiver, and every drop reason is counted."""
from __future__ import annotations

import struct

import pytest

from harness.errors import MalformedPacket, PacketDropped, ParseError, SequenceNumberOverflow
from harness.esp import DROP_REASONS, Faults, Receiver, SaDatabase, SecurityAssociation, Sender, frame_ike
from harness.tests.esp.packets import ADDRS, inner_packet, keymat

GCM = ("ENCR_AES_GCM_16", None)
CBC = ("ENCR_AES_CBC", "AUTH_HMAC_SHA2_256_128")


def _sa(protocol: str = "esp", transform=GCM, mode: str = "tunnel", v: int = 4, **kw) -> SecurityAssociation:
    src, dst = ADDRS[(mode, v)]
    e, i = transform if protocol == "esp" else (None, transform[1] or "AUTH_HMAC_SHA1_96")
    ek, ik = keymat(e, i)
    return SecurityAssociation(protocol, 0x4000, src, dst, mode, e, ek, i, ik, **kw)


def _drop(rx: Receiver, packet: bytes) -> PacketDropped:
    before = dict(rx.counters)
    with pytest.raises(PacketDropped) as e:
        rx.unprotect(packet)
    assert e.value.reason in DROP_REASONS
    assert rx.counters == {k: before[k] + (k == e.value.reason) for k in DROP_REASONS}
    return e.value


@pytest.mark.rfc(4303, "3.4.4.1", "MUST")
@pytest.mark.parametrize("protocol,transform", [("esp", GCM), ("esp", CBC), ("esp", ("ENCR_NULL", "AUTH_AES_XCBC_96")),
                                                ("ah", (None, "AUTH_HMAC_SHA2_256_128")), ("ah", (None, "AUTH_AES_256_GMAC"))])
@pytest.mark.parametrize("v", [4, 6])
def test_corrupt_icv_is_bad_icv(protocol: str, transform, v: int) -> None:
    sa = _sa(protocol, transform, v=v)
    tx, rx = Sender(sa), Receiver(sa)
    assert _drop(rx, tx.protect(inner_packet(v, 40), Faults(corrupt_icv=True))).reason == "bad_icv"
    assert rx.unprotect(tx.protect(inner_packet(v, 40))).seq == 2  # the window did not move for the bad packet


@pytest.mark.rfc(4303, "3.4.4.1", "MUST")
@pytest.mark.parametrize("transform", [GCM, CBC, ("ENCR_CHACHA20_POLY1305", None), ("ENCR_NULL_AUTH_AES_GMAC", None)])
def test_corrupt_ciphertext_is_bad_icv(transform) -> None:
    sa = _sa(transform=transform)
    assert _drop(Receiver(sa), Sender(sa).protect(inner_packet(4, 40), Faults(corrupt_ciphertext=True))).reason == "bad_icv"


@pytest.mark.rfc(4303, "3.4.3", "MUST")
def test_window_moves_only_after_the_icv_verifies() -> None:
    sa = _sa()
    tx, rx = Sender(sa), Receiver(sa)
    _drop(rx, tx.protect(inner_packet(4, 10), Faults(seq=10, corrupt_icv=True)))
    assert rx.window.top == 0
    assert rx.unprotect(tx.protect(inner_packet(4, 10), Faults(seq=10))).seq == 10


@pytest.mark.rfc(4303, "2.4", "SHOULD")
@pytest.mark.parametrize("transform", [GCM, CBC])
def test_bad_padding(transform) -> None:
    sa = _sa(transform=transform)
    tx, rx = Sender(sa), Receiver(sa)
    n = len(inner_packet(4, 41))
    align = 16 if transform is CBC else 4
    good_len = -(n + 2) % align
    wrong = bytes(reversed(range(1, good_len + align + 1)))  # right length (one block more), not 1, 2, 3...
    assert _drop(rx, tx.protect(inner_packet(4, 41), Faults(padding=wrong))).reason == "bad_padding"
    assert _drop(rx, tx.protect(inner_packet(4, 41), Faults(pad_length=250))).reason == "bad_padding"
    # explicit correct-looking padding of another legal length is accepted, and the receiver reports it
    longer = bytes(range(1, good_len + align + 1))
    assert rx.unprotect(tx.protect(inner_packet(4, 41), Faults(padding=longer))).pad_length == len(longer)
    lax = Receiver(sa, check_padding=False)
    lax.window.top = 0
    assert lax.unprotect(tx.protect(inner_packet(4, 41), Faults(padding=wrong, seq=1))).pad_length == len(wrong)


@pytest.mark.rfc(4303, "3.3.3", "MUST")
def test_chosen_sequence_numbers_including_zero() -> None:
    sa = _sa()
    tx, rx = Sender(sa), Receiver(sa)
    zero = tx.protect(inner_packet(4, 5), Faults(seq=0))
    assert struct.unpack_from("!I", zero, 24)[0] == 0 and tx.next_seq == 1  # seq 0 went out; the counter did not move
    assert _drop(rx, zero).reason == "too_old"
    assert rx.unprotect(tx.protect(inner_packet(4, 5), Faults(seq=1000))).seq == 1000
    assert tx.protect(inner_packet(4, 5))[24:28] == b"\x00\x00\x00\x01"
    assert _drop(rx, tx.protect(inner_packet(4, 5), Faults(seq=1000 - 64))).reason == "too_old"
    assert rx.unprotect(tx.protect(inner_packet(4, 5), Faults(seq=1000 - 63))).seq == 937


@pytest.mark.rfc(4303, "3.4.3", "MUST")
@pytest.mark.parametrize("protocol", ["esp", "ah"])
def test_replay_is_dropped(protocol: str) -> None:
    sa = _sa(protocol)
    tx, rx = Sender(sa), Receiver(sa)
    first = tx.protect(inner_packet(4, 5))
    rx.unprotect(first)
    rx.unprotect(tx.protect(inner_packet(4, 6)))
    assert tx.replay(2) == first
    assert _drop(rx, tx.replay(2)).reason == "replayed"
    assert _drop(rx, tx.replay()).reason == "replayed"


@pytest.mark.rfc(4303, "3.4.2", "MUST")
@pytest.mark.parametrize("protocol", ["esp", "ah"])
def test_wrong_spi_is_unknown_spi(protocol: str) -> None:
    sa = _sa(protocol)
    tx = Sender(sa)
    pkt = tx.protect(inner_packet(4, 5), Faults(spi=0x4001))
    assert _drop(Receiver(sa), pkt).reason == "unknown_spi"
    db = SaDatabase()
    db.add(sa)
    with pytest.raises(PacketDropped) as e:
        db.unprotect(pkt)
    assert e.value.reason == "unknown_spi" and db.counters["unknown_spi"] == 1 and e.value.spi == 0x4001
    assert db.unprotect(tx.protect(inner_packet(4, 5))).inner == inner_packet(4, 5)


@pytest.mark.parametrize("protocol", ["esp", "ah"])
@pytest.mark.parametrize("cut", [1, 3, 30, 200])
def test_truncated_packet(protocol: str, cut: int) -> None:
    sa = _sa(protocol, transform=CBC)
    e = _drop(Receiver(sa), Sender(sa).protect(inner_packet(4, 60), Faults(truncate=cut)))
    assert e.reason in ("malformed", "bad_icv")
    if protocol == "esp" or cut >= 200:
        assert e.reason == "malformed" and isinstance(e, ParseError) and e.field and e.offset >= 0


@pytest.mark.rfc(4303, "3.4.4.2", "MUST")
@pytest.mark.parametrize("protocol", ["esp", "ah"])
def test_wrong_next_header_in_tunnel_mode(protocol: str) -> None:
    sa = _sa(protocol)
    e = _drop(Receiver(sa), Sender(sa).protect(inner_packet(4, 20), Faults(next_header=17)))
    assert e.reason == "malformed" and e.field == "next header"
    # in transport mode the Next Header is delivered as sent
    sa = _sa(protocol, mode="transport")
    res = Receiver(sa).unprotect(Sender(sa).protect(inner_packet(4, 20), Faults(next_header=6)))
    assert res.next_header == 6 and res.inner[9] == 6


@pytest.mark.rfc(4303, "2.2.1", "MUST")
def test_wrong_esn_high_bits_is_bad_icv() -> None:
    sa = _sa(esn=True)
    tx, rx = Sender(sa, seq=(2 << 32) + 9), Receiver(sa)
    rx.window.top = (2 << 32) + 8
    assert _drop(rx, tx.protect(inner_packet(4, 5), Faults(seq_hi=3))).reason == "bad_icv"
    assert rx.unprotect(tx.protect(inner_packet(4, 5))).seq == (2 << 32) + 10


def test_chosen_iv_is_on_the_wire() -> None:
    sa = _sa()
    pkt = Sender(sa).protect(inner_packet(4, 5), Faults(iv=b"\x11" * 8))
    assert pkt[28:36] == b"\x11" * 8
    ah = _sa("ah", (None, "AUTH_AES_128_GMAC"))
    assert Sender(ah).protect(inner_packet(4, 5), Faults(iv=b"\x22" * 8))[32:40] == b"\x22" * 8


@pytest.mark.rfc(4303, "2.6", "MUST")
@pytest.mark.parametrize("mode", ["transport", "tunnel"])
def test_dummy_packets_are_discarded_by_next_header_59(mode: str) -> None:
    sa = _sa(mode=mode)
    tx, rx = Sender(sa), Receiver(sa)
    res = rx.unprotect(tx.dummy(17))
    assert res.dummy and res.inner == b"" and res.next_header == 59 and rx.dummies == 1 and rx.accepted == 0
    assert _drop(rx, tx.replay()).reason == "replayed"  # dummies use sequence numbers too
    with pytest.raises(ParseError):
        Sender(_sa("ah")).dummy()


@pytest.mark.parametrize("data", [b"", b"\x45", b"\x60" + bytes(10), bytes(40), b"\x45" + bytes(19), b"\x99" * 60],
                         ids=["empty", "one-byte", "short-v6", "version-0", "zero-v4", "version-9"])
def test_garbage_is_malformed(data: bytes) -> None:
    e = _drop(Receiver(_sa()), data)
    assert isinstance(e, MalformedPacket) and e.reason == "malformed"


def test_other_protocol_and_ike_on_4500_are_malformed() -> None:
    esp = _sa(mode="transport")
    ah = _sa("ah", mode="transport")
    assert _drop(Receiver(esp), Sender(ah).protect(inner_packet(4, 9))).field == "protocol"
    udp = _sa(mode="transport", udp_encap=(4500, 4500))
    rx = Receiver(udp)
    from harness.esp.ip import IPPROTO_UDP, addr_bytes, ipv4_header
    from harness.esp.udpencap import udp_header
    src, dst = addr_bytes(udp.src), addr_bytes(udp.dst)
    for payload, field in ((frame_ike(b"\x01" * 28), "non-ESP marker"), (b"\xff", "ESP header")):
        dgram = udp_header(src, dst, 4500, 4500, payload) + payload
        assert _drop(rx, ipv4_header(src, dst, IPPROTO_UDP, len(dgram)) + dgram).field == field


def test_fragments_are_malformed() -> None:
    sa = _sa(mode="transport")
    pkt = bytearray(Sender(sa).protect(inner_packet(4, 9)))
    pkt[6] |= 0x20  # More Fragments
    assert _drop(Receiver(sa), bytes(pkt)).field == "flags/fragment offset"


@pytest.mark.rfc(4303, "3.3.3", "MUST")
def test_sequence_number_does_not_cycle() -> None:
    sa = _sa()
    tx = Sender(sa, seq=0xFFFFFFFF)
    tx.protect(inner_packet(4, 1))
    with pytest.raises(SequenceNumberOverflow):
        tx.protect(inner_packet(4, 1))
    esn = Sender(_sa(esn=True), seq=0xFFFFFFFF)
    esn.protect(inner_packet(4, 1))
    assert esn.next_seq == 1 << 32


def test_sa_database_routes_by_protocol_spi_and_destination() -> None:
    a, b = _sa(), _sa("ah")
    db = SaDatabase()
    rx_a, rx_b = db.add(a), db.add(b)
    assert db.unprotect(Sender(a).protect(inner_packet(4, 3))).inner == inner_packet(4, 3) and rx_a.accepted == 1
    assert db.unprotect(Sender(b).protect(inner_packet(4, 3))).inner == inner_packet(4, 3) and rx_b.accepted == 1
    with pytest.raises(Exception) as e:
        db.add(a)
    assert "already registered" in str(e.value)
    db.remove(a)
    with pytest.raises(PacketDropped):
        db.unprotect(Sender(a).protect(inner_packet(4, 3)))
    assert db.counters["unknown_spi"] == 1
