"""decrypt_capture and `ipsec-interop decrypt` on captures made with the built-in Sender."""
from __future__ import annotations

import json
import os
import struct

import pytest

from harness.cli import main
from harness.esp import Faults, SecurityAssociation, Sender
from harness.esp.ip import addr_bytes, ipv4_header
from harness.keys import IpsecSaKeys, dump_keys
from harness.tools.capture_decrypt import decrypt_capture
from harness.tools.pcapio import LINKTYPE_ETHERNET, LINKTYPE_RAW, CapturedPacket, ethernet_frame, read_capture, write_pcap

A, B = "198.18.3.1", "198.18.3.2"


def _keys(spi=0x3000, esn=False, enc="ENCR_AES_GCM_16", integ=None, proto="esp", mode="transport"):
    from harness.crypto import encr as E, integ as I
    return IpsecSaKeys(proto, spi, A, B, mode, enc, os.urandom(E(enc).key_size(128 if E(enc).key_bits else None)) if enc else b"", integ,
                       os.urandom(I(integ).key_size) if integ else b"", esn)


def _inner(n: int) -> bytes:
    body = struct.pack("!HHHH", 1000 + n, 2000, 8 + 4, 0) + b"data"
    return ipv4_header(addr_bytes(A), addr_bytes(B), 17, len(body)) + body


def _pkts(frames) -> list[CapturedPacket]:
    return [CapturedPacket(i + 1, i, LINKTYPE_RAW, f) for i, f in enumerate(frames)]


def test_esn_high_bits_are_inferred_across_the_wrap():
    keys = _keys(esn=True)
    tx = Sender(SecurityAssociation.from_keys(keys), seq=(1 << 32) - 2)
    frames = [tx.protect(_inner(n)) for n in range(5)]  # 2^32-2 .. 2^32+2: the low half wraps
    rep = decrypt_capture(_pkts(frames), [keys])
    assert [r.status for r in rep.results] == ["decrypted"] * 5
    assert [r.seq for r in rep.results] == [(1 << 32) - 2 + n for n in range(5)]
    assert [r.inner for r in rep.results] == [_inner(n) for n in range(5)]


def test_ike_keepalive_and_other_traffic_are_not_ipsec():
    ike = ipv4_header(addr_bytes(A), addr_bytes(B), 17, 8 + 4 + 28) + struct.pack("!HHHH", 4500, 4500, 40, 0) + bytes(4) + bytes(28)
    keepalive = ipv4_header(addr_bytes(A), addr_bytes(B), 17, 9) + struct.pack("!HHHH", 4500, 4500, 9, 0) + b"\xff"
    rep = decrypt_capture(_pkts([ike, keepalive, _inner(0), b"\x45" + bytes(5)]), [])
    assert [r.status for r in rep.results] == ["not_ipsec"] * 4
    assert "IPv4 header: length at offset 0" in rep.results[3].reason


def test_udp_encapsulated_dummy_and_bad_padding():
    keys = _keys()
    tx = Sender(SecurityAssociation.from_keys(keys, udp_encap=(4500, 4500)))
    frames = [tx.protect(_inner(0)), tx.dummy(16), tx.protect(_inner(1), faults=Faults(padding=b"\x09\x09"))]
    rep = decrypt_capture(_pkts(frames), [keys])
    assert [r.status for r in rep.results] == ["decrypted", "decrypted", "failed"]
    assert rep.results[0].udp_encap and rep.results[1].inner is None and "dummy" in rep.results[1].reason
    assert rep.results[2].reason.startswith("bad_padding")
    assert rep.counts()["failed"] == 1


def test_ah_and_esp_null_count_as_verified_and_spi_picks_by_destination():
    ah = _keys(spi=0x10, enc=None, integ="AUTH_HMAC_SHA1_96", proto="ah", mode="tunnel")
    null = _keys(spi=0x10, enc="ENCR_NULL", integ="AUTH_HMAC_SHA2_256_128")
    other = IpsecSaKeys("esp", 0x10, B, A, "transport", "ENCR_NULL", b"", "AUTH_HMAC_SHA2_256_128", os.urandom(32))
    frames = [Sender(SecurityAssociation.from_keys(ah)).protect(_inner(0)), Sender(SecurityAssociation.from_keys(null)).protect(_inner(1))]
    rep = decrypt_capture(_pkts(frames), [other, ah, null])
    assert [r.status for r in rep.results] == ["verified", "verified"]
    assert rep.results[0].inner == _inner(0) and rep.results[1].inner == _inner(1)


def test_cli_ethernet_output_text_summary_and_exit_codes(tmp_path, capsys):
    keys = _keys()
    tx = Sender(SecurityAssociation.from_keys(keys))
    good, bad = tx.protect(_inner(0)), tx.protect(_inner(1), faults=Faults(corrupt_icv=True))
    mac_a, mac_b = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")
    cap = tmp_path / "in.pcap"
    write_pcap(cap, [(1, ethernet_frame(good, mac_a, mac_b)), (2, b"\xff" * 12 + b"\x08\x06" + bytes(28))], LINKTYPE_ETHERNET)
    kfile = tmp_path / "keys.json"
    dump_keys([keys], kfile)
    out = tmp_path / "out.pcap"
    assert main(["decrypt", "--keys", str(kfile), str(cap), "-o", str(out), "--linktype", "ethernet"]) == 0
    text = capsys.readouterr().out
    assert "ESP decrypted 1" in text and "not IPsec 1" in text
    written = read_capture(out)
    assert len(written) == 1 and written[0].linktype == LINKTYPE_ETHERNET
    assert written[0].data == ethernet_frame(_inner(0), mac_a, mac_b)

    write_pcap(cap, [(1, good), (2, bad)], LINKTYPE_RAW)
    assert main(["decrypt", "--keys", str(kfile), str(cap), "--json"]) == 1
    rep = json.loads(capsys.readouterr().out)
    assert (rep["decrypted"], rep["failed"]) == (1, 1) and rep["results"][1]["reason"].startswith("bad_icv")


@pytest.mark.parametrize("content,fragment", [('{"ipsec_sas": [{"protocol": "esp"}]}', "ipsec_sas[0]: key 'spi'"),
                                              ('"IPv4","x"', "entry 0")])
def test_cli_bad_keys_exit_2(tmp_path, capsys, content, fragment):
    kfile = tmp_path / "k"
    kfile.write_text(content)
    cap = tmp_path / "in.pcap"
    write_pcap(cap, [], LINKTYPE_RAW)
    assert main(["decrypt", "--keys", str(kfile), str(cap)]) == 2
    assert fragment in capsys.readouterr().err


def test_cli_bad_capture_exit_2(tmp_path, capsys):
    kfile = tmp_path / "k.json"
    dump_keys([], kfile)
    cap = tmp_path / "in.pcap"
    cap.write_bytes(b"nope")
    assert main(["decrypt", "--keys", str(kfile), str(cap)]) == 2
    assert "magic" in capsys.readouterr().err
