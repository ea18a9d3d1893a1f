"""Differential tests against scapy's SecurityAssociation: each side encrypts, the other decrypts, for every transform both have.

scapy 2.8 lacks, so they are not compared here (known answers and round trips cover them):
AUTH_AES_XCBC_96 (scapy has AES-CMAC-96 instead), AUTH_AES_*_GMAC for AH (scapy has no
AH GMAC), ENCR_AES_GCM_8 and ENCR_AES_GCM_12 (scapy decrypts AES-GCM with `AESGCM`, which
checks only 16-byte tags, so its crypt_icv_size 8/12 cannot verify). Everything else of harness.crypto's ESP/AH transforms is compared, both modes,
IPv4 and IPv6, and with ESN and UDP encapsulation for a sample.
"""
from __future__ import annotations

import os

import pytest

from harness.crypto import encr, integ
from harness.esp import Receiver, SecurityAssociation, Sender
from harness.tests.esp.packets import ADDRS, inner_packet, keymat

ipsec = pytest.importorskip("scapy.layers.ipsec", reason="scapy is not installed (pip install scapy)")
from scapy.layers.inet import IP, UDP  # noqa: E402
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, HBHOptUnknown, RouterAlert  # noqa: E402
from scapy.layers.inet import IPOption_Router_Alert, IPOption_RR  # noqa: E402

SCAPY_ENCR = {"ENCR_NULL": ("NULL", None), "ENCR_AES_CBC": ("AES-CBC", None), "ENCR_AES_CTR": ("AES-CTR", None),
              "ENCR_AES_GCM_16": ("AES-GCM", None),
              "ENCR_AES_CCM_8": ("AES-CCM", 8), "ENCR_AES_CCM_12": ("AES-CCM", 12), "ENCR_AES_CCM_16": ("AES-CCM", None),
              "ENCR_NULL_AUTH_AES_GMAC": ("AES-NULL-GMAC", None), "ENCR_CHACHA20_POLY1305": ("CHACHA20-POLY1305", None)}
SCAPY_INTEG = {"AUTH_HMAC_MD5_96": "HMAC-MD5-96", "AUTH_HMAC_SHA1_96": "HMAC-SHA1-96", "AUTH_HMAC_SHA2_256_128": "SHA2-256-128",
               "AUTH_HMAC_SHA2_384_192": "SHA2-384-192", "AUTH_HMAC_SHA2_512_256": "SHA2-512-256"}
ESP_PAIRS = [(e, None) for e in SCAPY_ENCR if encr(e).aead] + [(e, i) for e in SCAPY_ENCR if not encr(e).aead for i in SCAPY_INTEG]


def _pair(protocol: str, encryption: str | None, integrity: str | None, mode: str, v: int, esn_high: int | None = None,
          udp: bool = False, spi: int = 0x2000):
    src, dst = ADDRS[(mode, v)]
    ek, ik = keymat(encryption, integrity)
    ours = SecurityAssociation(protocol, spi, src, dst, mode, encryption, ek, integrity, ik, esn=esn_high is not None,
                               udp_encap=(4500, 4500) if udp else None)
    kw = {}
    if encryption is not None:
        name, icv = SCAPY_ENCR[encryption]
        kw.update(crypt_algo=name, crypt_key=ek)
        if icv is not None:
            kw["crypt_icv_size"] = icv
    if integrity is not None:
        kw.update(auth_algo=SCAPY_INTEG[integrity], auth_key=ik)
    if mode == "tunnel":
        kw["tunnel_header"] = IP(src=src, dst=dst) if v == 4 else IPv6(src=src, dst=dst)
    if udp:
        kw["nat_t_header"] = UDP(sport=4500, dport=4500)
    if esn_high is not None:
        kw.update(esn_en=True, esn=esn_high)
    theirs = ipsec.SecurityAssociation(ipsec.ESP if protocol == "esp" else ipsec.AH, spi=spi, **kw)
    return ours, theirs


def _both_ways(ours: SecurityAssociation, theirs, inner: bytes, seq: int = 1) -> None:
    layer = IP if inner[0] >> 4 == 4 else IPv6
    outer_layer = IP if ours.version == 4 else IPv6
    tx, rx = Sender(ours, seq=seq), Receiver(ours)
    rx.window.top = seq - 1
    # ours -> scapy
    mine = tx.protect(inner)
    assert bytes(theirs.decrypt(outer_layer(mine))) == inner
    # scapy -> ours
    theirs_out = bytes(theirs.encrypt(layer(inner), seq_num=seq & 0xFFFFFFFF))
    res = rx.unprotect(theirs_out)
    assert res.inner == inner and res.seq == seq


@pytest.mark.parametrize("encryption,integrity", ESP_PAIRS, ids=[f"{e}+{i}" for e, i in ESP_PAIRS])
@pytest.mark.parametrize("mode", ["transport", "tunnel"])
@pytest.mark.parametrize("v", [4, 6])
def test_esp_against_scapy(encryption: str, integrity: str | None, mode: str, v: int) -> None:
    ours, theirs = _pair("esp", encryption, integrity, mode, v)
    _both_ways(ours, theirs, inner_packet(v, 45))


@pytest.mark.parametrize("integrity", list(SCAPY_INTEG))
@pytest.mark.parametrize("mode", ["transport", "tunnel"])
@pytest.mark.parametrize("v", [4, 6])
def test_ah_against_scapy(integrity: str, mode: str, v: int) -> None:
    ours, theirs = _pair("ah", None, integrity, mode, v)
    _both_ways(ours, theirs, inner_packet(v, 45))


@pytest.mark.rfc(4303, "2.2.1", "MUST")
@pytest.mark.parametrize("protocol,encryption,integrity", [
    ("esp", "ENCR_AES_GCM_16", None), ("esp", "ENCR_AES_CBC", "AUTH_HMAC_SHA2_256_128"), ("esp", "ENCR_CHACHA20_POLY1305", None),
    ("esp", "ENCR_NULL_AUTH_AES_GMAC", None), ("ah", None, "AUTH_HMAC_SHA1_96")])
def test_esn_against_scapy(protocol: str, encryption: str | None, integrity: str | None) -> None:
    ours, theirs = _pair(protocol, encryption, integrity, "tunnel", 4, esn_high=3)
    _both_ways(ours, theirs, inner_packet(4, 20), seq=(3 << 32) | 17)


@pytest.mark.rfc(3948, "2.1", "MUST")
@pytest.mark.parametrize("mode", ["transport", "tunnel"])
@pytest.mark.parametrize("v", [4, 6])
def test_udp_encapsulation_against_scapy(mode: str, v: int) -> None:
    ours, theirs = _pair("esp", "ENCR_AES_GCM_16", None, mode, v, udp=True)
    _both_ways(ours, theirs, inner_packet(v, 30))


def _ah_transport(inner: bytes, integrity: str = "AUTH_HMAC_SHA2_256_128"):
    v = inner[0] >> 4
    src, dst = ADDRS[("transport", v)]
    ik = os.urandom(integ(integrity).key_size)
    ours = SecurityAssociation("ah", 0x3000, src, dst, "transport", integrity=integrity, integrity_key=ik)
    theirs = ipsec.SecurityAssociation(ipsec.AH, spi=0x3000, auth_algo=SCAPY_INTEG[integrity], auth_key=ik)
    return ours, theirs


@pytest.mark.rfc(4302, "3.3.3.1.1.2", "MUST")
def test_ah_ipv4_options_against_scapy() -> None:
    """Router Alert is immutable (kept in the ICV), Record Route is mutable (zeroed whole)."""
    inner = bytes(IP(src="198.18.1.1", dst="198.18.2.2", ttl=9, tos=0x28, options=[IPOption_Router_Alert(), IPOption_RR(routers=["198.18.9.9"])])
                  / UDP(sport=5, dport=6) / b"options")
    ours, theirs = _ah_transport(inner)
    _both_ways(ours, theirs, inner)
    # a router changing TTL, TOS and the Record Route option does not break the ICV; changing Router Alert does
    out = bytearray(Sender(ours).protect(inner))
    out[1], out[8] = 0x00, 3
    rr_at = 20 + 4
    out[rr_at + 3:rr_at + 7] = bytes([198, 18, 7, 7])
    hl = (inner[0] & 15) * 4
    got = Receiver(ours).unprotect(_fix_v4_checksum(bytes(out))).inner
    assert got[hl:] == inner[hl:] and got[27:31] == bytes([198, 18, 7, 7])  # delivered as it arrived
    out[20 + 2] ^= 1  # Router Alert value
    with pytest.raises(Exception) as e:
        Receiver(ours).unprotect(_fix_v4_checksum(bytes(out)))
    assert getattr(e.value, "reason", None) == "bad_icv"


def _fix_v4_checksum(pkt: bytes) -> bytes:
    from harness.esp.ip import checksum
    hl = (pkt[0] & 15) * 4
    hdr = pkt[:10] + b"\0\0" + pkt[12:hl]
    return hdr[:10] + checksum(hdr).to_bytes(2, "big") + pkt[12:]


@pytest.mark.rfc(4302, "3.3.3.1.2.2", "MUST")
def test_ah_ipv6_extension_headers_against_scapy() -> None:
    """Hop-by-hop and destination options: data of options with the change-en-route bit (0x20) zeroed, others covered."""
    inner = bytes(IPv6(src="2001:db8::1", dst="2001:db8::2", tc=0x28, fl=77, hlim=9)
                  / IPv6ExtHdrHopByHop(options=[RouterAlert(), HBHOptUnknown(otype=0x3E, optdata=b"\x01\x02\x03\x04")])
                  / IPv6ExtHdrDestOpt(options=[HBHOptUnknown(otype=0x1E, optdata=b"\x05\x06")])
                  / UDP(sport=5, dport=6) / b"ext headers")
    ours, theirs = _ah_transport(inner)
    _both_ways(ours, theirs, inner)


@pytest.mark.rfc(4302, "Appendix A.2", "MUST")
def test_ah_ipv6_routing_header_against_scapy() -> None:
    """A type 0 routing header with segments left: the ICV is over the packet as the final destination sees it."""
    pkt = IPv6(src="2001:db8::1", dst="2001:db8::100") / IPv6ExtHdrRouting(type=0, segleft=2, addresses=["2001:db8::101", "2001:db8::2"]) \
        / UDP(sport=5, dport=6) / b"routed"
    inner = bytes(pkt)
    ours, theirs = _ah_transport(inner)
    mine = Sender(ours).protect(inner)
    with pytest.raises(Exception) as e:  # not yet routed: the ICV covers the final form, so it fails here
        Receiver(ours).unprotect(mine)
    assert getattr(e.value, "reason", None) == "bad_icv"
    for sent in (mine, bytes(theirs.encrypt(IPv6(inner)))):
        # what the final destination receives: destination = last address, list rotated, segments left 0
        p = IPv6(sent)
        rh = p[IPv6ExtHdrRouting]
        p.dst, rh.addresses, rh.segleft = "2001:db8::2", ["2001:db8::100", "2001:db8::101"], 0
        arrived = bytes(p)
        theirs.decrypt(IPv6(arrived))  # scapy verifies the ICV (IPSecIntegrityError otherwise)
        got = IPv6(Receiver(ours).unprotect(arrived).inner)
        assert got.dst == "2001:db8::2" and got[IPv6ExtHdrRouting].segleft == 0 and bytes(got[UDP]) == bytes(pkt[UDP])


@pytest.mark.rfc(4303, "3.1.1", "MUST")
@pytest.mark.parametrize("protocol", ["esp", "ah"])
def test_ipv6_transport_after_extension_headers_against_scapy(protocol: str) -> None:
    """ESP/AH go after hop-by-hop and destination options headers in IPv6 transport mode; both sides agree."""
    inner = bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
                  / UDP(sport=1, dport=2) / b"after extension headers")
    if protocol == "esp":
        ours, theirs = _pair("esp", "ENCR_AES_GCM_16", None, "transport", 6)
    else:
        ours, theirs = _ah_transport(inner)
    _both_ways(ours, theirs, inner)
    out = Sender(ours).protect(inner)
    assert (out[6], out[40], out[48]) == (0, 60, 50 if protocol == "esp" else 51)  # HbH -> DestOpt -> ESP/AH
