"""check_wire (the strict check after every case) and `ipsec-interop decrypt --strict` on captures made with the built-in stack."""
from __future__ import annotations

import functools
import json
import struct
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import ConfigError, ParseError
from harness.esp import SecurityAssociation, Sender
from harness.esp.ip import addr_bytes, ipv4_header
from harness.keys import IpsecSaKeys, KeysFile, dump_keys, parse_keys
from harness.tools.ike_capture import LoopbackCapture, loopback_capture
from harness.tools.pcapio import (
    LINKTYPE_ETHERNET,
    ethernet_frame,
    read_capture,
    write_pcap,
)
from harness.tools.wire_check import SaCounter, check_wire

A, B = "198.18.5.1", "198.18.5.2"
SPI_AB, SPI_BA, SPI_STRAY = 0x5001, 0x5002, 0x5999
N = 4  # packets each way


def _sa(spi: int, src: str, dst: str) -> IpsecSaKeys:
    return IpsecSaKeys("esp", spi, src, dst, "transport", "ENCR_AES_GCM_16", bytes(range(spi % 7, spi % 7 + 20)))


AB, BA, STRAY = _sa(SPI_AB, A, B), _sa(SPI_BA, B, A), _sa(SPI_STRAY, A, B)
KEYS = KeysFile(ipsec_sas=[AB, BA])


def _inner(src: str, dst: str, n: int) -> bytes:
    body = struct.pack("!HHHH", 40000 + n, 7, 8 + 8, 0) + f"wire {n:03d}".encode()
    return ipv4_header(addr_bytes(src), addr_bytes(dst), 17, len(body)) + body


def _protect(keys: IpsecSaKeys, count: int = N) -> list[bytes]:
    """count ESP packets on the SA, sequence numbers 1..count."""
    tx = Sender(SecurityAssociation.from_keys(keys))
    return [tx.protect(_inner(keys.src, keys.dst, n)) for n in range(count)]


def _exchange() -> list[bytes]:
    """N packets each way, interleaved: frames 1, 3, 5, 7 on SPI_AB, 2, 4, 6, 8 on SPI_BA."""
    return [p for pair in zip(_protect(AB), _protect(BA)) for p in pair]


def _pcap(path: Path, frames: list[bytes]) -> Path:
    write_pcap(path, [(n * 1000, f) for n, f in enumerate(frames)])
    return path


def _flip(frame: bytes, at: int) -> bytes:
    return frame[:at] + bytes([frame[at] ^ 0x01]) + frame[at + 1:]


def test_clean_capture_passes(tmp_path):
    rep = check_wire({"lan": _pcap(tmp_path / "lan.pcap", _exchange())}, KEYS)
    assert rep.ok and rep.problems == []
    assert (rep.counts["packets"], rep.counts["decrypted"], rep.counts["failed"], rep.counts["unknown_spi"]) == (8, 8, 0, 0)
    assert rep.per_sa == {("esp", SPI_AB, B): N, ("esp", SPI_BA, A): N}


def test_flipped_ciphertext_byte_is_reported_with_frame_and_spi(tmp_path):
    frames = _exchange()
    frames[4] = _flip(frames[4], 20 + 8 + 8 + 1)  # IPv4 header, ESP header, GCM IV, then the ciphertext
    rep = check_wire({"lan": _pcap(tmp_path / "lan.pcap", frames)}, KEYS)
    assert not rep.ok and len(rep.problems) == 1
    (problem,) = rep.problems
    assert problem.startswith("lan (lan.pcap) frame 5: ESP SPI 0x00005001 to 198.18.5.2 seq 3: does not decrypt/verify")
    assert "bad_icv" in problem and "\n" not in problem
    assert rep.counts["failed"] == 1 and rep.per_sa[("esp", SPI_AB, B)] == N  # a failed packet still crossed the wire


def test_spi_in_no_keys_entry_is_a_problem(tmp_path):
    frames = _exchange() + _protect(STRAY, 1)
    rep = check_wire({"lan": _pcap(tmp_path / "lan.pcap", frames)}, KEYS)
    assert rep.problems == [("lan (lan.pcap) frame 9: ESP SPI 0x00005999 to 198.18.5.2 seq 1: "
                             "unknown SPI (in no keys entry: neither end reported this SA)")]
    assert rep.counts["unknown_spi"] == 1


def test_repeated_sequence_number_is_a_problem(tmp_path):
    frames = _exchange()
    frames.append(frames[2])  # SPI_AB seq 2 again, byte for byte
    rep = check_wire({"lan": _pcap(tmp_path / "lan.pcap", frames)}, KEYS)
    assert rep.problems == ["lan (lan.pcap) frame 9: ESP SPI 0x00005001 to 198.18.5.2 seq 2: sequence number repeated on the SA"]
    assert rep.counts["duplicates"] == 1


def test_sequence_number_lower_than_the_one_before_is_a_problem(tmp_path):
    tx = Sender(SecurityAssociation.from_keys(AB))
    frames = [tx.protect(_inner(A, B, n)) for n in range(3)]
    frames[1], frames[2] = frames[2], frames[1]
    rep = check_wire({"lan": _pcap(tmp_path / "lan.pcap", frames)}, KeysFile(ipsec_sas=[AB]))
    assert rep.problems == ["lan (lan.pcap) frame 3: ESP SPI 0x00005001 to 198.18.5.2 seq 2: lower than 3 before it "
                            "(the sender's counter only increases: RFC 4303 s3.3.3)"]


def test_an_sa_whose_first_packet_is_not_sequence_number_1_is_a_problem(tmp_path):
    frames = _protect(AB, 3)[1:]
    rep = check_wire({"lan": _pcap(tmp_path / "lan.pcap", frames)}, KeysFile(ipsec_sas=[AB]))
    assert rep.problems == ["lan (lan.pcap) frame 1: ESP SPI 0x00005001 to 198.18.5.2: the SA's first packet has "
                            "sequence number 2, not 1 (RFC 4303 s3.3.3)"]


def test_an_sa_moved_to_a_new_destination_mid_sa_is_not_a_new_sa(tmp_path):
    frames = _protect(AB, 3)
    moved = frames[2][:16] + addr_bytes("198.18.5.200") + frames[2][20:]  # a NAT's new mapping (RFC 7296 s2.23)
    moved = moved[:10] + b"\0\0" + moved[12:]
    from harness.esp.ip import checksum

    moved = moved[:10] + checksum(moved[:20]).to_bytes(2, "big") + moved[12:]
    rep = check_wire({"lan": _pcap(tmp_path / "lan.pcap", [*frames[:2], moved])}, KeysFile(ipsec_sas=[AB]))
    assert rep.problems == [] and rep.per_sa[("esp", SPI_AB, "198.18.5.200")] == 1


def test_an_iv_repeated_under_one_key_is_a_problem(tmp_path):
    from harness.esp import Faults

    tx = Sender(SecurityAssociation.from_keys(AB))
    frames = [tx.protect(_inner(A, B, n), Faults(iv=bytes(8))) for n in range(2)]
    rep = check_wire({"lan": _pcap(tmp_path / "lan.pcap", frames)}, KeysFile(ipsec_sas=[AB]))
    assert len(rep.problems) == 1 and "seq 2: IV 0000000000000000 repeated from seq 1" in rep.problems[0]


@pytest.mark.rfc(4303, "2.4", "MUST")
@pytest.mark.parametrize("faults,reason", [({"padding": bytes(-(len(_inner(A, B, 1)) - 20 + 2) % 4 + 4)},
                                            "Padding is not 1, 2, 3"),  # the right length (GCM: 4 octets), zeros
                                           ({"pad_length": 200}, "Pad Length 200 exceeds")],
                         ids=["padding-not-1-2-3", "pad-length-past-the-payload"])
def test_padding_and_pad_length_are_checked_on_every_packet(tmp_path, faults, reason):
    """An end's packet (not crafted) whose Padding is not the default 1, 2, 3, ... or whose Pad Length runs past the
    payload (RFC 4303 s2.4) is a problem of the wire, at the packet's frame."""
    from harness.esp import Faults

    tx = Sender(SecurityAssociation.from_keys(AB))
    frames = [tx.protect(_inner(A, B, 0)), tx.protect(_inner(A, B, 1), Faults(**faults))]
    rep = check_wire({"lan": _pcap(tmp_path / "lan.pcap", frames)}, KeysFile(ipsec_sas=[AB]))
    assert len(rep.problems) == 1 and rep.problems[0].startswith("lan (lan.pcap) frame 2: ESP SPI 0x00005001")
    assert "bad_padding" in rep.problems[0] and reason in rep.problems[0]


def _tunnel(spi: int, outer: tuple[str, str]) -> IpsecSaKeys:
    return IpsecSaKeys("esp", spi, *outer, "tunnel", "ENCR_AES_GCM_16", bytes(range(20)))


@pytest.mark.rfc(4303, "3.1.2", "MUST")
@pytest.mark.parametrize("outer,inner_v,next_header", [(("2001:db8:5::1", "2001:db8:5::2"), 4, 4),
                                                       ((A, B), 6, 41)], ids=["4in6", "6in4"])
def test_a_tunnel_of_the_other_family_opens_and_its_next_header_must_match(tmp_path, outer, inner_v, next_header):
    """A tunnel-mode SA carrying the other IP family (4-in-6, 6-in-4) opens to the inner packet (Next Header 4 or
    41); a packet whose Next Header names the other family than the inner packet's is a problem of the wire."""
    from harness.esp import Faults
    from harness.esp.ip import parse_ip
    from harness.tests.esp.packets import inner_packet
    from harness.tools.capture_decrypt import decrypt_capture

    keys = _tunnel(0x5003, outer)
    tx = Sender(SecurityAssociation.from_keys(keys))
    inner = inner_packet(inner_v, 20)
    good = [tx.protect(inner) for _ in range(2)]
    path = _pcap(tmp_path / "ok.pcap", good)
    rep = check_wire({"lan": path}, KeysFile(ipsec_sas=[keys]))
    assert rep.ok and rep.counts["decrypted"] == 2
    opened = decrypt_capture(read_capture(path), [keys]).results
    assert [r.inner for r in opened] == [inner, inner] and parse_ip(good[0]).version != inner_v
    wrong = tx.protect(inner, Faults(next_header=45 - next_header))  # 41 for an IPv4 packet, 4 for an IPv6 one
    rep = check_wire({"lan": _pcap(tmp_path / "bad.pcap", [*good, wrong])}, KeysFile(ipsec_sas=[keys]))
    assert len(rep.problems) == 1 and "frame 3" in rep.problems[0] and "under Next Header" in rep.problems[0]


def test_packets_crafted_on_purpose_are_counted_not_problems(tmp_path):
    from harness.esp import Faults

    tx = Sender(SecurityAssociation.from_keys(AB))
    good = [tx.protect(_inner(A, B, n)) for n in range(3)]
    crafted = [tx.protect(_inner(A, B, 9), Faults(corrupt_icv=True)), tx.protect(_inner(A, B, 8), Faults(seq=2))]
    frames = [good[0], crafted[0], good[1], crafted[1], good[2]]
    rep = check_wire({"lan": _pcap(tmp_path / "lan.pcap", frames)}, KeysFile(ipsec_sas=[AB]),
                     [SaCounter("esp", SPI_AB, B, 3, "out", "builtin"), SaCounter("esp", SPI_AB, B, 4, "in", "peer")],
                     crafted=crafted)
    assert rep.problems == [] and rep.counts["ipsec_crafted"] == 2 and rep.per_sa[("esp", SPI_AB, B)] == 5


@pytest.mark.parametrize("direction,packets,ok", [("out", 4, True), ("out", 5, False), ("out", 3, False),
                                                  ("in", 4, True), ("in", 3, True), ("in", 5, False)])
def test_counters_against_the_wire(tmp_path, direction, packets, ok):
    counter = SaCounter("esp", SPI_AB, B, packets, direction, end="strongswan")
    rep = check_wire({"lan": _pcap(tmp_path / "lan.pcap", _exchange())}, KEYS, [counter])
    assert rep.ok is ok
    if not ok:
        (problem,) = rep.problems
        assert problem.startswith(f"strongswan: {direction} counter of ESP SPI 0x00005001 to 198.18.5.2: {packets} packets")
        assert "the wire has 4 (lan: 4)" in problem


def test_packet_seen_on_two_segments_counts_once(tmp_path):
    frames = _exchange()
    pcaps = {"left": _pcap(tmp_path / "left.pcap", frames), "right": _pcap(tmp_path / "right.pcap", frames[:-2])}
    counters = [SaCounter("esp", SPI_AB, B, N, "out", "a"), SaCounter("esp", SPI_BA, A, N, "out", "b"),
                SaCounter("esp", SPI_BA, A, N, "in", "a")]
    rep = check_wire(pcaps, KEYS, counters)
    assert rep.ok, rep.problems
    assert rep.per_sa == {("esp", SPI_AB, B): N, ("esp", SPI_BA, A): N}
    assert rep.counts["decrypted"] == 2 * N + 2 * N - 2  # summed over the files


def test_counter_of_an_sa_absent_from_the_wire(tmp_path):
    rep = check_wire({"lan": _pcap(tmp_path / "lan.pcap", _protect(AB))}, KEYS,
                     [SaCounter("esp", SPI_BA, A, 2, "out", "b"), SaCounter("esp", SPI_BA, A, 0, "in", "a")])
    assert rep.problems == [("b: out counter of ESP SPI 0x00005002 to 198.18.5.1: 2 packets sent, the wire has 0 (in no capture); "
                             "it must equal the wire's count")]


def test_bad_counter_is_a_config_error():
    with pytest.raises(ConfigError, match="direction 'both'"):
        SaCounter("esp", SPI_AB, B, 1, "both")
    with pytest.raises(ConfigError, match="dst 'b' is not an IP address"):
        SaCounter("esp", SPI_AB, "b", 1, "out")


def test_decrypted_captures_are_written_for_segments_with_ipsec(tmp_path):
    mac_a, mac_b = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")
    lan = tmp_path / "lan.pcap"
    write_pcap(lan, [(n, ethernet_frame(f, mac_a, mac_b)) for n, f in enumerate(_exchange())], LINKTYPE_ETHERNET)
    plain = _pcap(tmp_path / "plain.pcap", [_inner(A, B, 0)])
    out = tmp_path / "decrypted"
    rep = check_wire({"lan": lan, "plain": plain}, KEYS, decrypted_dir=out)
    assert rep.ok and rep.decrypted == {"lan": out / "lan.decrypted.pcap"}
    assert sorted(p.name for p in out.iterdir()) == ["lan.decrypted.pcap"]
    written = read_capture(out / "lan.decrypted.pcap")
    expected = [_inner(s, d, n) for n in range(N) for s, d in ((A, B), (B, A))]
    assert [p.linktype for p in written] == [LINKTYPE_ETHERNET] * 2 * N
    assert [p.data for p in written] == [ethernet_frame(ip, mac_a, mac_b) for ip in expected]


def test_unreadable_captures_raise_typed_errors(tmp_path):
    with pytest.raises(ConfigError, match="segment lan: .*missing.pcap: cannot read capture"):
        check_wire({"lan": tmp_path / "missing.pcap"}, KEYS)
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"not a capture")
    with pytest.raises(ParseError, match="magic"):
        check_wire({"lan": junk}, KEYS)


@functools.cache
def _ike_capture() -> LoopbackCapture:
    return loopback_capture()


def _ike_keys(with_ike: bool = True) -> KeysFile:
    keys = parse_keys(_ike_capture().keys, "loopback")
    if not with_ike:
        keys.sections["ike_sas"] = []
    return keys


def test_ike_and_esp_of_the_loopback_capture_pass(tmp_path):
    rep = check_wire({"lan": _pcap(tmp_path / "ike.pcap", _ike_capture().frames)}, _ike_keys())
    assert rep.ok, rep.problems
    assert (rep.counts["ike_messages"], rep.counts["ike_decrypted"], rep.counts["decrypted"]) == (16, 12, 6)


def test_ike_message_failing_its_icv_is_a_problem(tmp_path):
    frames = list(_ike_capture().frames)
    frames[2] = _flip(frames[2], len(frames[2]) - 1)  # frame 3, IKE_AUTH request: the last byte of the SK payload's ICV
    rep = check_wire({"lan": _pcap(tmp_path / "ike.pcap", frames)}, _ike_keys())
    (problem,) = rep.problems
    assert problem.startswith("lan (ike.pcap) frame 3: IKE SA 0x") and "IKE_AUTH request 1" in problem
    assert "SK/SKF does not verify" in problem and rep.counts["ike_failed"] == 1


def test_ike_messages_without_keys_are_counted_not_problems(tmp_path):
    rep = check_wire({"lan": _pcap(tmp_path / "ike.pcap", _ike_capture().frames)}, _ike_keys(with_ike=False))
    assert rep.ok, rep.problems
    assert (rep.counts["ike_unknown_spi"], rep.counts["ike_decrypted"]) == (12, 0)


def test_decrypt_strict_fails_on_unknown_spi(tmp_path, capsys):
    cap = _pcap(tmp_path / "in.pcap", _protect(AB, 2) + _protect(STRAY, 1))
    kfile = tmp_path / "keys.json"
    dump_keys([AB], kfile)
    assert main(["decrypt", "--keys", str(kfile), str(cap)]) == 0
    assert "(failed: --strict)" not in capsys.readouterr().out
    assert main(["decrypt", "--keys", str(kfile), str(cap), "--strict"]) == 1
    text = capsys.readouterr().out
    assert "unknown SPI 1 (failed: --strict)" in text and "#3: unknown_spi ESP SPI 0x00005999" in text
    assert main(["decrypt", "--keys", str(kfile), str(cap), "--strict", "--json"]) == 1
    rep = json.loads(capsys.readouterr().out)
    assert rep["strict"] is True and (rep["decrypted"], rep["unknown_spi"]) == (2, 1)
    assert main(["decrypt", "--keys", str(kfile), str(cap), "--json"]) == 0
    assert "strict" not in json.loads(capsys.readouterr().out)


def test_decrypt_strict_passes_when_every_spi_is_known(tmp_path, capsys):
    cap = _pcap(tmp_path / "in.pcap", _protect(AB, 2))
    kfile = tmp_path / "keys.json"
    dump_keys([AB], kfile)
    assert main(["decrypt", "--keys", str(kfile), str(cap), "--strict"]) == 0
    assert "unknown SPI 0," in capsys.readouterr().out


def test_an_ike_message_bent_on_purpose_is_counted_not_a_problem(tmp_path):
    frames = list(_ike_capture().frames)
    frames[2] = _flip(frames[2], len(frames[2]) - 1)
    datagram = frames[2][28:]  # IPv4 and UDP headers off: the IKE datagram as the end that bent it sent it
    assert datagram[17] == 0x20 and int.from_bytes(datagram[24:28], "big") == len(datagram)  # IKEv2 header, its Length
    rep = check_wire({"lan": _pcap(tmp_path / "ike.pcap", frames)}, _ike_keys(), bent=[datagram])
    assert rep.ok, rep.problems
    assert (rep.counts["ike_bent"], rep.counts["ike_failed"]) == (1, 1)
    other = check_wire({"lan": _pcap(tmp_path / "ike.pcap", frames)}, _ike_keys(), bent=[datagram[:-1] + b"\0"])
    assert len(other.problems) == 1  # only the very datagram that was bent is excused
