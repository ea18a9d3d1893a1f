"""Differential check of the codec against Wireshark's IKEv2 dissector: tshark parses what we encode, decrypts
our SK/SKF payloads with the exported ikev2_decryption_table and verifies our ICVs (needs tshark)."""
from __future__ import annotations

import ipaddress
import os
import struct
import subprocess
from pathlib import Path

import pytest

from harness.ike.bend import Bend
from harness.ike.export import IkeSaKeys
from harness.ike.message import IKE_AUTH, IKE_SA_INIT, Header, Message
from harness.ike.payloads import (AUTH, CERTREQ, CP, KE, SA, Attribute, ConfigAttribute, D, IDi, Nonce, Notify,
                                  Proposal, Selector, Transform, TSi, TSr, V)
from harness.ike.sk import IkeSkKeys, fragment, protect
from harness.tools.pcapio import LINKTYPE_RAW, write_pcap
from harness.tools.tshark import PI_ERROR, tshark_path

pytestmark = [pytest.mark.tshark,
              pytest.mark.skipif(tshark_path() is None, reason="tshark is not installed")]

FIELDS = ("isakmp.typepayload", "isakmp.notify.msgtype", "isakmp.id.type", "isakmp.ts.type", "isakmp.frag.number",
          "isakmp.frag.total", "isakmp.messageid", "_ws.malformed", "_ws.expert.severity", "_ws.expert.message")
SPI_I, SPI_R = bytes.fromhex("0102030405060708"), bytes.fromhex("a1a2a3a4a5a6a7a8")


def ipv4_udp(payload: bytes) -> bytes:
    """An IPv4/UDP 500 packet 198.18.0.1 -> 198.18.0.2 around an IKE datagram."""
    udp = struct.pack("!HHHH", 500, 500, 8 + len(payload), 0) + payload
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, bytes([198, 18, 0, 1]),
                    bytes([198, 18, 0, 2]))
    s = sum(struct.unpack("!10H", h))
    s = (s & 0xFFFF) + (s >> 16)
    return h[:10] + struct.pack("!H", ~(s + (s >> 16)) & 0xFFFF) + h[12:] + udp


def dissect(tmp_path: Path, datagrams: list[bytes], keys: IkeSaKeys | None = None) -> list[dict[str, list[str]]]:
    """One dict field -> values per datagram, as tshark sees it (decrypting with keys when given)."""
    pcap = tmp_path / "ike.pcap"
    write_pcap(pcap, [(i * 1000, ipv4_udp(d)) for i, d in enumerate(datagrams)], LINKTYPE_RAW)
    cfg = tmp_path / "cfg"
    (cfg / "wireshark").mkdir(parents=True)
    if keys is not None:
        (cfg / "wireshark" / "ikev2_decryption_table").write_text(keys.wireshark_line() + "\n")
    argv = [tshark_path() or "tshark", "-n", "-r", str(pcap), "-T", "fields", "-E", "separator=\t",
            "-E", "occurrence=a", "-E", "aggregator=|"]
    for f in FIELDS:
        argv += ["-e", f]
    env = dict(os.environ, XDG_CONFIG_HOME=str(cfg), HOME=str(cfg))
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=True).stdout
    return [{f: [x for x in v.split("|") if x] for f, v in zip(FIELDS, line.split("\t"))} for line in out.splitlines()]


def payload_types(row: dict[str, list[str]]) -> list[str]:
    """Payload types in order (isakmp.typepayload also lists proposals as 2 and transforms as 3: dropped)."""
    return [t for t in row.get("isakmp.typepayload", []) if t not in ("2", "3")]


BAD_ICV = "IKEv2 Integrity Checksum Data is incorrect"


def errors(row: dict[str, list[str]]) -> list[str]:
    """Malformed marks and expert messages of Error severity."""
    sev, msg = row.get("_ws.expert.severity", []), row.get("_ws.expert.message", [])
    return (["malformed"] if row.get("_ws.malformed") else []) + \
        [m for s, m in zip(sev, msg) if int(s) >= PI_ERROR]


def test_plain_messages_dissect_cleanly(tmp_path):
    sa = SA([Proposal(1, 1, b"", [Transform(1, 12, [Attribute(14, 256)]), Transform(2, 5), Transform(3, 12),
                                   Transform(4, 19)])])
    init = Message(Header(SPI_I, bytes(8), IKE_SA_INIT, 0, initiator=True),
                   [Notify("COOKIE", bytes(16)), sa, KE(19, bytes(64)), Nonce(bytes(32)),
                    Notify("NAT_DETECTION_SOURCE_IP", bytes(20)), Notify("SIGNATURE_HASH_ALGORITHMS", b"\x00\x02"),
                    Notify("IKEV2_FRAGMENTATION_SUPPORTED"), CERTREQ(4, bytes(20)), V(b"ipsec-interop")])
    ts = [Selector(ipaddress.ip_address("198.18.0.0"), ipaddress.ip_address("198.18.255.255"), 6, 0, 65535)]
    other = Message(Header(SPI_I, SPI_R, IKE_AUTH, 1, initiator=True),
                    [IDi(2, b"tester.example"), AUTH(2, bytes(32)), CP(1, [ConfigAttribute(1)]), TSi(ts),
                     TSr([Selector(ipaddress.ip_address("2001:db8::"), ipaddress.ip_address("2001:db8::ff"))]),
                     D(3, [bytes(4)])])
    rows = dissect(tmp_path, [init.encode(), other.encode()])
    assert [errors(r) for r in rows] == [[], []]
    assert payload_types(rows[0]) == ["41", "33", "34", "40", "41", "41", "41", "38", "43"]
    assert rows[0]["isakmp.notify.msgtype"] == ["16390", "16388", "16431", "16430"]
    assert payload_types(rows[1]) == ["35", "39", "47", "44", "45", "42"]
    assert rows[1]["isakmp.ts.type"] == ["7", "8"]


WIRESHARK_SUITES = [("ENCR_AES_CBC", 128, "AUTH_HMAC_SHA2_256_128"), ("ENCR_AES_CBC", 256, "AUTH_HMAC_SHA2_512_256"),
                    ("ENCR_AES_CBC", 192, "AUTH_HMAC_SHA1_96"), ("ENCR_AES_CBC", 128, "AUTH_HMAC_MD5_96"),
                    ("ENCR_AES_CBC", 256, "AUTH_HMAC_SHA2_384_192"), ("ENCR_AES_CTR", 128, "AUTH_HMAC_SHA2_256_128"),
                    ("ENCR_AES_GCM_16", 256, None), ("ENCR_AES_GCM_8", 128, None), ("ENCR_AES_GCM_12", 192, None),
                    ("ENCR_AES_CCM_16", 128, None), ("ENCR_AES_CCM_8", 256, None)]


def sa_keys(encr: str, bits: int, integ: str | None) -> IkeSaKeys:
    """Deterministic IKE SA keys of the right sizes."""
    from harness.crypto import encr as e, integ as i
    ke, ka = e(encr).key_size(bits), (i(integ).key_size if integ else 0)
    return IkeSaKeys(SPI_I, SPI_R, encr, bits, bytes(range(ke)), bytes(range(100, 100 + ke)), integ,
                     bytes(range(ka)), bytes(range(50, 50 + ka)))


INNER = [IDi(2, b"tester.example"), AUTH(2, bytes(32)), Notify("INITIAL_CONTACT"), Notify("USE_TRANSPORT_MODE")]


@pytest.mark.parametrize("encr,bits,integ", WIRESHARK_SUITES, ids=lambda v: str(v))
def test_wireshark_decrypts_and_verifies_our_sk(tmp_path, encr, bits, integ):
    k = sa_keys(encr, bits, integ)
    pair = IkeSkKeys.from_ike_sa_keys(k)
    req = protect(Header(SPI_I, SPI_R, IKE_AUTH, 1, initiator=True), INNER, pair.for_sender(True))
    resp = protect(Header(SPI_I, SPI_R, IKE_AUTH, 1, response=True), INNER[2:], pair.for_sender(False))
    bad = protect(Header(SPI_I, SPI_R, IKE_AUTH, 2, initiator=True), INNER, pair.for_sender(True),
                  bends=[Bend("sk_icv_flip", index=1)])
    rows = dissect(tmp_path, [req, resp, bad], k)
    assert errors(rows[0]) == [] and errors(rows[1]) == []
    assert payload_types(rows[0]) == ["46", "35", "39", "41", "41"]
    assert rows[0]["isakmp.notify.msgtype"] == ["16384", "16391"]
    assert payload_types(rows[1]) == ["46", "41", "41"]
    assert [BAD_ICV in r.get("_ws.expert.message", []) for r in rows[:2]] == [False, False]
    if integ is not None:  # Wireshark 4.0 checks HMAC ICVs; it does not verify AEAD tags (seen here), so no negative
        assert BAD_ICV in rows[2].get("_ws.expert.message", [])


@pytest.mark.rfc(7383, "2.5", "MUST")
def test_wireshark_reads_our_fragments(tmp_path):
    k = sa_keys("ENCR_AES_CBC", 128, "AUTH_HMAC_SHA2_256_128")
    big = [IDi(2, b"tester.example"), AUTH(14, bytes(range(256)) * 3), Notify("INITIAL_CONTACT")]
    frags = fragment(Header(SPI_I, SPI_R, IKE_AUTH, 1, initiator=True), big,
                     IkeSkKeys.from_ike_sa_keys(k).for_sender(True), 400)
    rows = dissect(tmp_path, frags, k)
    assert [errors(r) for r in rows] == [[]] * len(frags)
    assert [(r["isakmp.frag.number"], r["isakmp.frag.total"]) for r in rows] == \
        [([str(n)], [str(len(frags))]) for n in range(1, len(frags) + 1)]
    assert all(payload_types(r)[0] == "53" for r in rows)
    assert not any(BAD_ICV in r.get("_ws.expert.message", []) for r in rows)
