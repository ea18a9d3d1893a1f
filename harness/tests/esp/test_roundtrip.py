"""Round trips through Sender/Receiver for every ESP transform and AH integrity, both modes, IPv4/IPv6, UDP encapsulation."""
from __future__ import annotations

import os

import pytest

from harness.crypto import ENCR, INTEG
from harness.errors import ConfigError
from harness.esp import Faults, Receiver, SecurityAssociation, Sender

from harness.tests.esp.packets import ADDRS, inner_packet, keymat

ESP_TRANSFORMS = [(e.name, None) for e in ENCR.values() if e.aead] + [
    (e.name, i.name) for e in ENCR.values() if not e.aead for i in INTEG.values() if i.family != "gmac"]
AH_TRANSFORMS = [i.name for i in INTEG.values()]


def _sa(protocol: str, mode: str, v: int, encryption: str | None, integrity: str | None, **kw) -> SecurityAssociation:
    src, dst = ADDRS[(mode, v)]
    ek, ik = keymat(encryption, integrity)
    return SecurityAssociation(protocol, 0x1000 + v, src, dst, mode, encryption, ek, integrity, ik, **kw)


@pytest.mark.rfc(4303, "3.3", "MUST")
@pytest.mark.parametrize("encryption,integrity", ESP_TRANSFORMS, ids=[f"{e}+{i}" for e, i in ESP_TRANSFORMS])
@pytest.mark.parametrize("mode", ["transport", "tunnel"])
@pytest.mark.parametrize("v", [4, 6])
def test_esp_roundtrip(encryption: str, integrity: str | None, mode: str, v: int) -> None:
    sa = _sa("esp", mode, v, encryption, integrity)
    tx, rx = Sender(sa), Receiver(sa)
    for size in (0, 1, 13, 200):
        pkt = inner_packet(v, size)
        out = tx.protect(pkt)
        assert out != pkt
        res = rx.unprotect(out)
        assert res.inner == pkt and res.spi == sa.spi
    assert rx.accepted == 4 and rx.window.top == 4


@pytest.mark.rfc(4302, "3.3", "MUST")
@pytest.mark.parametrize("integrity", AH_TRANSFORMS)
@pytest.mark.parametrize("mode", ["transport", "tunnel"])
@pytest.mark.parametrize("v", [4, 6])
@pytest.mark.parametrize("esn", [False, True])
def test_ah_roundtrip(integrity: str, mode: str, v: int, esn: bool) -> None:
    sa = _sa("ah", mode, v, None, integrity, esn=esn)
    tx, rx = Sender(sa, seq=(5 << 32) - 1 if esn else 1), Receiver(sa)
    rx.window.top = tx.next_seq - 1
    for size in (0, 37):
        pkt = inner_packet(v, size)
        out = tx.protect(pkt)
        hl = 20 if v == 4 else 40
        assert out.endswith(pkt if mode == "tunnel" else pkt[hl:])  # AH authenticates, it does not encrypt
        assert out[hl] == ((4 if v == 4 else 41) if mode == "tunnel" else 17)  # AH Next Header
        assert rx.unprotect(out).inner == pkt
    ah_len = (out[(20 if v == 4 else 40) + 1] + 2) * 4
    assert ah_len % (4 if v == 4 else 8) == 0


@pytest.mark.rfc(3948, "2.1", "MUST")
@pytest.mark.parametrize("mode", ["transport", "tunnel"])
@pytest.mark.parametrize("v", [4, 6])
def test_udp_encapsulated_roundtrip(mode: str, v: int) -> None:
    sa = _sa("esp", mode, v, "ENCR_AES_GCM_16", None, udp_encap=(4500, 4500))
    tx, rx = Sender(sa), Receiver(sa)
    pkt = inner_packet(v, 50)
    out = tx.protect(pkt)
    hl = 20 if v == 4 else 40
    assert out[9 if v == 4 else 6] == 17 and out[hl + 2:hl + 4] == b"\x11\x94"
    assert rx.unprotect(out).inner == pkt


@pytest.mark.rfc(4303, "2.2.1", "MUST")
@pytest.mark.parametrize("encryption,integrity", [("ENCR_AES_GCM_16", None), ("ENCR_AES_CBC", "AUTH_HMAC_SHA2_256_128"),
                                                  ("ENCR_NULL_AUTH_AES_GMAC", None), ("ENCR_CHACHA20_POLY1305", None)])
def test_esn_high_bits_are_authenticated(encryption: str, integrity: str | None) -> None:
    """With ESN the high half is not sent but covered: a receiver guessing another high half rejects the packet."""
    sa = _sa("esp", "tunnel", 4, encryption, integrity, esn=True)
    tx, rx = Sender(sa, seq=(7 << 32) + 5), Receiver(sa)
    rx.window.top = (7 << 32) + 4
    out = tx.protect(inner_packet(4, 10))
    assert rx.unprotect(out).seq == (7 << 32) + 5
    other = Receiver(sa)
    other.window.top = (6 << 32) + 4
    with pytest.raises(Exception) as e:
        other.unprotect(out)
    assert getattr(e.value, "reason", None) == "bad_icv"


def test_tfc_padding_is_stripped_in_tunnel_mode() -> None:
    sa = _sa("esp", "tunnel", 6, "ENCR_AES_GCM_16", None)
    tx, rx = Sender(sa), Receiver(sa)
    pkt = inner_packet(6, 20)
    plain = tx.protect(pkt)
    padded = tx.protect(pkt, Faults(tfc_length=333))
    assert len(padded) - len(plain) >= 333 - 3  # the Padding may shrink by up to 3 bytes
    res = rx.unprotect(padded)
    assert res.inner == pkt and res.tfc_length == 333


def test_sa_export_is_the_keys_file_form() -> None:
    sa = _sa("esp", "tunnel", 4, "ENCR_AES_CBC", "AUTH_HMAC_SHA2_256_128", esn=True)
    j = sa.to_json()
    assert j == {"protocol": "esp", "spi": "0x00001004", "src": sa.src, "dst": sa.dst, "mode": "tunnel",
                 "encryption": "ENCR_AES_CBC", "encryption_key": sa.encryption_key.hex(),
                 "integrity": "AUTH_HMAC_SHA2_256_128", "integrity_key": sa.integrity_key.hex(), "esn": True}
    assert SecurityAssociation.from_keys(sa.to_keys()) == sa


@pytest.mark.parametrize("kw", [
    dict(protocol="esp", encryption="ENCR_AES_GCM_16", encryption_key=bytes(20), integrity="AUTH_HMAC_SHA1_96", integrity_key=bytes(20)),
    dict(protocol="esp", encryption="ENCR_NULL"),
    dict(protocol="esp", encryption="ENCR_AES_CBC", encryption_key=bytes(15)),
    dict(protocol="ah", integrity="AUTH_HMAC_SHA1_96", integrity_key=bytes(20), encryption="ENCR_NULL"),
    dict(protocol="ah"),
    dict(protocol="esp", encryption="ENCR_NULL", integrity="AUTH_AES_128_GMAC", integrity_key=bytes(20)),
    dict(protocol="esp", encryption="ENCR_BOGUS"),
    dict(protocol="xx", encryption="ENCR_NULL"),
    dict(protocol="esp", encryption="ENCR_AES_CBC", encryption_key="00" * 16, integrity="AUTH_HMAC_SHA1_96", integrity_key=bytes(20)),
    dict(protocol="esp", encryption="ENCR_AES_GCM_16", encryption_key=bytes(20), udp_encap=(4500,)),
    dict(protocol="ah", integrity="AUTH_HMAC_SHA1_96", integrity_key=bytes(20), udp_encap=(4500, 4500)),
], ids=["aead+integ", "null-alone", "short-key", "ah-with-encr", "ah-without-integ", "esp-with-ah-gmac", "unknown", "protocol",
        "hex-key", "udp-one-port", "ah-in-udp"])
def test_inconsistent_sa_is_a_config_error(kw: dict) -> None:
    with pytest.raises(ConfigError):
        SecurityAssociation(spi=1, src="198.18.0.1", dst="198.18.0.2", **kw)
    with pytest.raises(ConfigError):
        SecurityAssociation(protocol="esp", spi="1", src="198.18.0.1", dst="198.18.0.2", encryption="ENCR_AES_GCM_16",
                            encryption_key=bytes(20))


def test_random_is_injected() -> None:
    sa = _sa("esp", "tunnel", 4, "ENCR_AES_GCM_16", None)
    a = Sender(sa, random=lambda n: bytes(n)).protect(inner_packet(4, 8))
    b = Sender(sa, random=lambda n: bytes(n)).protect(inner_packet(4, 8))
    assert a == b and a[28:36] == bytes(8)
    assert os.urandom  # the default source stays os.urandom
