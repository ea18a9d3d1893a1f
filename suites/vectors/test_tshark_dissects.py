"""Wireshark (tshark) as an independent judge: it must decrypt what we export keys for, with no errors.

Kernel captures (vectors/captures) are decoded with the esp_sa table written by
harness.keys; the built-in stack's own ESP packets are checked the same way in
test_tshark_builtin_stack below. Wireshark 4.0 lacks ChaCha20-Poly1305 (4.2+), AES-CCM,
AES-GMAC and AES-XCBC, and checks no AH ICVs: those cases skip naming the reason.
"""
from __future__ import annotations

import json
import struct

import pytest

from harness.keys import load_keys
from harness.keys.wireshark import wireshark_supports
from harness.vectors import VECTORS_DIR

from harness.tools.tshark import problems, tshark_path, tshark_rows

pytestmark = [pytest.mark.tshark, pytest.mark.skipif(tshark_path() is None, reason="tshark not installed")]

CAPTURES = VECTORS_DIR / "captures"
MANIFEST = json.loads((CAPTURES / "manifest.json").read_text())["captures"]


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_tshark_decrypts_kernel_capture(name):
    entry = MANIFEST[name]
    sas = load_keys(CAPTURES / entry["keys"]).ipsec_sas
    ah = sas[0].protocol == "ah"
    why = wireshark_supports(sas[0])
    if why and not ah:
        pytest.skip(f"Wireshark 4.0: {why}")
    rows, skipped = tshark_rows(CAPTURES / entry["file"], sas)
    assert len(skipped) == (2 if ah else 0)  # AH: dissected in the clear, its ICV is not checked by Wireshark
    assert len(rows) == entry["expected"]["packets"]
    payload = entry["echo"]["payload"]
    for row in rows:
        assert not problems(row), (row["frame.number"], problems(row))
        if not row["esp.spi"]:
            continue  # a non-final IP fragment: Wireshark shows ESP at the frame that reassembles it
        assert row["esp.icv_good"] == ([] if ah else ["1"])
        assert payload in row["data.data"], f"frame {row['frame.number']}: inner ICMP payload not decrypted"
        assert (row["icmp.type"] or row["icmpv6.type"])[-1] in ("8", "0", "128", "129")


# ---- the built-in stack's own packets ----------------------------------------------------------

PAYLOAD = b"ipsec-interop built-in stack, checked by tshark".ljust(48, b".")
ESP_INTEG = ("AUTH_HMAC_MD5_96", "AUTH_HMAC_SHA1_96", "AUTH_AES_XCBC_96", "AUTH_HMAC_SHA2_256_128", "AUTH_HMAC_SHA2_384_192",
             "AUTH_HMAC_SHA2_512_256")
ADDR = {4: ("198.18.2.1", "198.18.2.2", "198.18.21.1", "198.18.22.1"),
        6: ("2001:db8:2::1", "2001:db8:2::2", "2001:db8:21::1", "2001:db8:22::1")}


def _cases() -> list[tuple[str, str, str | None, int | None, str | None, str, int, bool]]:
    """(id, protocol, encryption, key bits, integrity, mode, IP version, UDP-encapsulated) for every transform."""
    from harness.crypto import ENCR, INTEG
    out = []
    for e in ENCR.values():
        for bits in e.key_bits or (None,):
            for i in ((None,) if e.aead else ESP_INTEG):
                for mode in ("transport", "tunnel"):
                    out.append(("esp", e.name, bits, i, mode, 4, False))
    for i in INTEG.values():
        for mode in ("transport", "tunnel"):
            for v in (4, 6):
                out.append(("ah", None, None, i.name, mode, v, False))
    for name, bits, i in (("ENCR_AES_GCM_16", 128, None), ("ENCR_AES_CBC", 256, "AUTH_HMAC_SHA2_256_128")):
        for mode in ("transport", "tunnel"):
            out.append(("esp", name, bits, i, mode, 6, False))
            out.append(("esp", name, bits, i, mode, 4, True))
    return [(f"{p}-{e or ''}{'-' + str(b) if b else ''}-{i or 'aead'}-{m}-v{v}{'-udpencap' if u else ''}".replace("--", "-"), p, e, b, i, m, v, u)
            for p, e, b, i, m, v, u in out]


CASES = _cases()


def _echo(version: int, src: str, dst: str, seq: int) -> bytes:
    from harness.esp.ip import addr_bytes, checksum, ipv4_header, ipv6_header
    if version == 4:
        icmp = struct.pack("!BBHHH", 8, 0, 0, 0x4242, seq) + PAYLOAD
        icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
        return ipv4_header(addr_bytes(src), addr_bytes(dst), 1, len(icmp)) + icmp
    s, d = addr_bytes(src), addr_bytes(dst)
    icmp = struct.pack("!BBHHH", 128, 0, 0, 0x4242, seq) + PAYLOAD
    pseudo = s + d + struct.pack("!IxxxB", len(icmp), 58)
    icmp = icmp[:2] + struct.pack("!H", checksum(pseudo + icmp)) + icmp[4:]
    return ipv6_header(s, d, 58, len(icmp)) + icmp


@pytest.fixture(scope="module")
def builtin_capture(tmp_path_factory):
    """One pcap holding two packets per case, and tshark's reading of it with the exported esp_sa table."""
    import os

    from harness.crypto import encr, integ
    from harness.esp import SecurityAssociation, Sender
    from harness.keys import IpsecSaKeys
    from harness.tools.pcapio import LINKTYPE_RAW, write_pcap

    frames, sas, where = [], [], {}
    for n, (cid, proto, e, bits, i, mode, v, udp) in enumerate(CASES):
        out_src, out_dst, in_src, in_dst = ADDR[v]
        keys = IpsecSaKeys(proto, 0x51000000 + n, out_src, out_dst, mode, e, os.urandom(encr(e).key_size(bits)) if e else b"",
                           i, os.urandom(integ(i).key_size) if i else b"")
        tx = Sender(SecurityAssociation.from_keys(keys, udp_encap=(4500, 4500) if udp else None))
        src, dst = (in_src, in_dst) if mode == "tunnel" else (out_src, out_dst)
        where[cid] = (len(frames), keys)
        for seq in (1, 2):
            frames.append((len(frames) * 1000, tx.protect(_echo(v, src, dst, seq))))
        sas.append(keys)
    pcap = tmp_path_factory.mktemp("tshark") / "builtin.pcap"
    write_pcap(pcap, frames, LINKTYPE_RAW)
    rows, _skipped = tshark_rows(pcap, sas)
    assert len(rows) == len(frames)
    return rows, where


@pytest.mark.parametrize("cid,proto,e,bits,i,mode,v,udp", CASES, ids=[c[0] for c in CASES])
def test_tshark_builtin_stack(builtin_capture, cid, proto, e, bits, i, mode, v, udp):
    rows, where = builtin_capture
    first, keys = where[cid]
    why = wireshark_supports(keys)
    if why and proto == "esp":
        pytest.skip(f"Wireshark 4.0: {why}")
    for row in rows[first: first + 2]:
        assert not problems(row), (cid, row["frame.number"], problems(row))
        assert row["esp.icv_good"] == ([] if proto == "ah" else ["1"]), cid
        assert PAYLOAD.hex() in row["data.data"], f"{cid}: inner ICMP payload not seen by tshark"
        assert (row["icmp.type"] if v == 4 else row["icmpv6.type"])[-1] == ("8" if v == 4 else "128")
        addrs = row["ip.src"] + row["ip.dst"] if v == 4 else row["ipv6.src"] + row["ipv6.dst"]
        assert set(ADDR[v][2:] if mode == "tunnel" else ADDR[v][:2]) <= set(addrs)
