"""Unit tests of the parts: cipher contexts agree with the registry, the fast paths equal the general path, IP and UDP framing, AH mutable fields."""
from __future__ import annotations

import itertools
import os

import pytest

from harness.crypto import ENCR, INTEG
from harness.errors import ParseError
from harness.esp import EncrContext, Faults, IntegContext, Receiver, SecurityAssociation, Sender, classify, frame_ike, unframe_ike, zero_mutable
from harness.esp.ip import addr_bytes, checksum, ipv4_header, ipv6_header, parse_ip
from harness.esp.udpencap import udp_header
from harness.tests.esp.packets import ADDRS, inner_packet, keymat


@pytest.mark.parametrize("name", [e.name for e in ENCR.values()])
def test_encr_context_agrees_with_the_registry(name: str) -> None:
    e = ENCR[[k for k, v in ENCR.items() if v.name == name][0]]
    for bits in e.key_bits or (None,):
        km = os.urandom(e.key_size(bits))
        ctx = EncrContext(e, km)
        for n in (0, 16, 48):
            pt, iv, aad = os.urandom(n), os.urandom(e.iv_size), os.urandom(8)
            ct = e.encrypt(km, iv, pt, aad)
            assert ctx.encrypt(iv, pt, aad) == ct
            assert ctx.decrypt(iv, ct, aad) == pt == e.decrypt(km, iv, ct, aad)


@pytest.mark.parametrize("name", [i.name for i in INTEG.values()])
def test_integ_context_agrees_with_the_registry(name: str) -> None:
    i = [v for v in INTEG.values() if v.name == name][0]
    key = os.urandom(i.key_size)
    ctx = IntegContext(i, key)
    for n in (0, 1, 15, 16, 17, 32, 100):
        data, iv = os.urandom(n), os.urandom(i.iv_size)
        icv = i.icv(key, data, iv)
        assert ctx.icv(data, iv) == icv and ctx.verify(data, icv, iv) and not ctx.verify(data + b"x", icv, iv)


class _Counter:
    """A deterministic IV source, so two senders produce the same bytes."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, size: int) -> bytes:
        self.n += 1
        return self.n.to_bytes(size, "big") if size else b""


@pytest.mark.parametrize("encryption,integrity", [("ENCR_AES_GCM_16", None), ("ENCR_AES_CCM_16", None), ("ENCR_CHACHA20_POLY1305", None),
                                                  ("ENCR_AES_CBC", "AUTH_HMAC_SHA2_256_128"), ("ENCR_NULL", "AUTH_HMAC_SHA1_96")])
@pytest.mark.parametrize("mode", ["transport", "tunnel"])
@pytest.mark.parametrize("v", [4, 6])
def test_fast_paths_equal_the_general_path(encryption: str, integrity: str | None, mode: str, v: int) -> None:
    """protect(p) (fast paths) and protect(p, Faults()) (the general path) give the same bytes; both unprotect alike."""
    src, dst = ADDRS[(mode, v)]
    ek, ik = keymat(encryption, integrity)
    sa = SecurityAssociation("esp", 0x77, src, dst, mode, encryption, ek, integrity, ik)
    fast, slow = Sender(sa, random=_Counter()), Sender(sa, random=_Counter())
    rx_fast, rx_slow = Receiver(sa), Receiver(sa)
    for size, inner_v in itertools.product((0, 1, 2, 3, 50, 1400), (4, 6) if mode == "tunnel" else (v,)):
        pkt = inner_packet(inner_v, size)
        a, b = fast.protect(pkt), slow.protect(pkt, Faults())
        assert a == b
        ra = rx_fast.unprotect(a)
        rx_slow.window.top = ra.seq - 1
        rb = rx_slow._unprotect(b)  # the general path, bypassing the fast ones
        assert ra == rb and ra.inner == pkt
        assert checksum(a[:20]) == 0 if sa.version == 4 else True
    assert fast.next_seq == slow.next_seq


def test_tunnel_outer_header_copies_tos_and_has_a_valid_checksum() -> None:
    sa = SecurityAssociation("esp", 1, "198.18.0.1", "198.18.0.2", "tunnel", "ENCR_AES_GCM_16", bytes(20))
    inner = bytearray(inner_packet(4, 10))
    inner[1] = 0xB9
    inner[10:12] = checksum(bytes(inner[:10]) + b"\0\0" + bytes(inner[12:20])).to_bytes(2, "big")
    for faults in (None, Faults()):
        out = Sender(sa).protect(bytes(inner), faults)
        assert out[1] == 0xB9 and checksum(out[:20]) == 0 and out[9] == 50 and out[12:20] == bytes([198, 18, 0, 1, 198, 18, 0, 2])


def test_parse_ip_reports_field_and_offset() -> None:
    v4 = inner_packet(4, 10)
    with pytest.raises(ParseError) as e:
        parse_ip(v4[:2] + (999).to_bytes(2, "big") + v4[4:])
    assert (e.value.field, e.value.offset) == ("total length", 2)
    with pytest.raises(ParseError) as e:
        parse_ip(bytes([0x44]) + v4[1:])
    assert e.value.field == "IHL"
    v6 = bytearray(ipv6_header(addr_bytes("2001:db8::1"), addr_bytes("2001:db8::2"), 0, 8) + bytes([17, 5]) + bytes(6))
    with pytest.raises(ParseError) as e:
        parse_ip(bytes(v6))
    assert e.value.field == "extension header 0 length" and e.value.offset == 41
    ok = bytearray(v6)
    ok[41] = 0
    view = parse_ip(bytes(ok))
    assert (view.proto, view.offset, view.proto_pos) == (17, 48, 40)


def test_udp_encapsulation_framing() -> None:
    ike = b"\x11" * 28
    assert frame_ike(ike) == bytes(4) + ike and unframe_ike(frame_ike(ike)) == ike
    assert classify(frame_ike(ike)) == "ike" and classify(b"\xff") == "keepalive" and classify(b"\x00\x00\x10\x00" + bytes(8)) == "esp"
    for bad in (b"", b"\x01\x02", b"\x00\x00\x10\x00\x01"):
        with pytest.raises(ParseError):
            classify(bad)
    with pytest.raises(ParseError) as e:
        unframe_ike(b"\x00\x00\x10\x00" + bytes(8))
    assert e.value.field == "non-ESP marker"
    src, dst = addr_bytes("2001:db8::1"), addr_bytes("2001:db8::2")
    h = udp_header(src, dst, 4500, 4500, b"payload")
    pseudo = src + dst + (15).to_bytes(4, "big") + bytes(3) + b"\x11"
    assert checksum(pseudo + h + b"payload") == 0  # IPv6 UDP checksum verifies
    assert udp_header(bytes(4), bytes(4), 4500, 4500, b"x")[6:] == b"\0\0"  # IPv4: zero (RFC 3948 s2.1)


@pytest.mark.rfc(4302, "3.3.3.1.1.1", "MUST")
def test_ah_zeroes_exactly_the_mutable_ipv4_fields() -> None:
    hdr = ipv4_header(bytes([198, 18, 0, 1]), bytes([198, 18, 0, 2]), 51, 100, tos=0xFF, ttl=200, ident=0x1234, df=True)
    z = zero_mutable(hdr, True)
    assert z[1] == 0 and z[6:9] == bytes(3) and z[10:12] == bytes(2)
    assert z[0] == 0x45 and z[2:6] == hdr[2:6] and z[9] == 51 and z[12:] == hdr[12:]


@pytest.mark.rfc(4302, "3.3.3.1.2.1", "MUST")
def test_ah_zeroes_exactly_the_mutable_ipv6_fields() -> None:
    hdr = bytes([0x6F, 0xFF, 0xFF, 0xFF]) + ipv6_header(addr_bytes("2001:db8::1"), addr_bytes("2001:db8::2"), 51, 10, hop_limit=9)[4:]
    z = zero_mutable(hdr, True)
    assert z[:4] == b"\x60\0\0\0" and z[7] == 0 and z[4:7] == hdr[4:7] and z[8:] == hdr[8:]


@pytest.mark.rfc(4543, "3.5", "MUST")
@pytest.mark.parametrize("integrity", ["AUTH_AES_128_GMAC", "AUTH_AES_192_GMAC", "AUTH_AES_256_GMAC"])
@pytest.mark.parametrize("v", [4, 6])
def test_ah_gmac_carries_an_8_byte_iv_before_the_icv(integrity: str, v: int) -> None:
    src, dst = ADDRS[("transport", v)]
    _, ik = keymat(None, integrity)
    sa = SecurityAssociation("ah", 0x55, src, dst, "transport", integrity=integrity, integrity_key=ik)
    out = Sender(sa).protect(inner_packet(v, 12), Faults(iv=b"\xAB" * 8))
    hl = 20 if v == 4 else 40
    ah_len = (out[hl + 1] + 2) * 4
    assert out[hl + 12:hl + 20] == b"\xAB" * 8 and ah_len == (36 if v == 4 else 40)
    # the tag is GMAC over the zeroed packet with the IV in place, nonce = salt || IV
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    zeroed = zero_mutable(out[:hl], False) + out[hl:hl + 20] + bytes(16) + out[hl + 36:]
    assert AESGCM(ik[:-4]).encrypt(ik[-4:] + b"\xAB" * 8, b"", zeroed) == out[hl + 20:hl + 36]
    assert Receiver(sa).unprotect(out).inner == inner_packet(v, 12)


def test_replacing_the_window_or_history_takes_effect_on_every_path() -> None:
    """Callers may swap Receiver.window (e.g. a capture decryptor) and Sender.sent; the fast paths must follow."""
    from harness.errors import PacketDropped
    from harness.esp import ReplayWindow
    sa = SecurityAssociation("esp", 0x78, "198.18.1.1", "198.18.2.2", "transport", "ENCR_AES_GCM_16", bytes(20))
    tx, rx = Sender(sa), Receiver(sa)
    first, second = tx.protect(inner_packet(4, 10)), tx.protect(inner_packet(4, 11))
    rx.unprotect(second)
    assert rx.window.top == 2
    rx.window = fresh = ReplayWindow(64)
    assert rx.unprotect(first).seq == 1 and fresh.top == 1  # the new window took the update
    with pytest.raises(PacketDropped) as e:
        rx.unprotect(first)
    assert e.value.reason == "replayed"
    rx.window = ReplayWindow(1, top=1)
    assert rx.unprotect(second).seq == 2 and rx.window.top == 2
    from collections import deque
    tx.sent = deque(maxlen=2)
    tx.protect(inner_packet(4, 12))
    assert len(tx.sent) == 1
