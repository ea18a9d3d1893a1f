"""Specialised per-SA closures for the hottest case: combined-mode ESP without ESN or UDP, IPv4 outer header without options.

`sender_fast(sender, general)` and `receiver_fast(receiver, general)` return a drop-in
`protect(inner, faults=None)` / `unprotect(outer)` for the instance, or None when the SA is
not such a case. Every packet they do not handle in full (faults, fragments, options,
out-of-order sequence numbers, TFC padding, dummies, any failure) goes to `general`, the
class's own method, which gives the exact result or the typed drop. They produce the same
bytes as the general path (tests compare both with a fixed IV source).
"""
from __future__ import annotations

import os
import struct
from struct import error as struct_error
from typing import TYPE_CHECKING, Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305

from harness.esp.esp import DEFAULT_PADDING
from harness.esp.ip import IPPROTO_ESP, IPPROTO_IPIP, IPPROTO_UDP

if TYPE_CHECKING:
    from harness.esp.receiver import Receiver, Unprotected
    from harness.esp.sender import Sender

M32 = 0xFFFFFFFF
M64 = (1 << 64) - 1
# The IPv4 header as six fields: version/IHL/TOS, total length, identification+flags/fragment offset,
# TTL/protocol, checksum, source+destination. The Internet checksum of 16-bit words equals the
# one's-complement fold of their sum, and since 2**16 == 1 (mod 0xFFFF) a 32- or 64-bit field adds the
# same residue as its 16-bit halves: checksum = -(sum of the fields but the checksum) % 0xFFFF
# (0 when the fold is 0xFFFF, as in the word-by-word RFC 1071 loop of the general path).
_V4 = struct.Struct("!HHIHHQ")
_V4_ESP = struct.Struct("!HHIHHQIIQ")  # the IPv4 header, then SPI, sequence number, 8-byte IV
_V4_ESP_NOIV = struct.Struct("!HHIHHQII")
_II = struct.Struct("!II")


def _aead(sa) -> tuple[Callable, Callable, bytes] | None:
    """(encrypt, decrypt, salt) of a full-tag AEAD transform with an 8-byte IV, or None."""
    e = sa.encr
    if (e is None or not e.aead or e.iv_size != 8 or sa.esn or sa.udp_encap is not None or sa.protocol != "esp"
            or sa.version != 4):
        return None
    key, salt = e._split(sa.encryption_key)
    if e.family == "gcm" and e.icv_size == 16:
        a = AESGCM(key)
    elif e.family == "ccm":
        a = AESCCM(key, tag_length=e.icv_size)
    elif e.family == "chacha20poly1305":
        a = ChaCha20Poly1305(key)
    else:
        return None
    return a.encrypt, a.decrypt, salt


def sender_fast(sender: "Sender", general: Callable[..., bytes]) -> Callable[..., bytes] | None:
    """protect() for a combined-mode ESP SA (fault-free packets here, the rest via general), or None."""
    found = _aead(sender.sa)
    if found is None:
        return None
    enc, _, salt = found
    sa = sender.sa
    spi, ivs, icvs, random = sa.spi, sa.encr.iv_size, sa.encr.icv_size, sender._random
    trailers = [DEFAULT_PADDING[p] + bytes((p, nh)) for p in range(4) for nh in range(256)]
    pack_nonce = struct.Struct(f"!{len(salt)}sQ").pack
    if random is os.urandom:
        # IV = a random per-sender base plus the sequence number: unique under the key without a
        # system call per packet (RFC 4106 s3.1 asks only that an IV is never repeated for a key);
        # the base leaves room for every 32-bit sequence number, so base + seq never wraps
        base = int.from_bytes(os.urandom(8), "big") % ((1 << 64) - (1 << 32))
        injected = None
    else:
        base, injected = 0, random
    unpack_v4, pack_ii = _V4.unpack_from, _II.pack
    pack_hdr, pack_hdr_noiv = _V4_ESP.pack, _V4_ESP_NOIV.pack
    esp_overhead = 8 + ivs + 2 + icvs
    fixed = esp_overhead  # outer total length = fixed + inner total length + pad

    if sa.mode == "transport":
        if injected is None:
            def fast(inner: bytes, faults=None) -> bytes:
                if faults is None and type(inner) is bytes:
                    try:
                        w0, w1, idf, w4, _, addrs = unpack_v4(inner)
                    except struct_error:  # shorter than an IPv4 header: the general path names the problem
                        return general(inner, faults)
                    seq = sender.next_seq
                    if w0 >> 8 == 0x45 and 20 <= w1 <= len(inner) and not idf & 0x3FFF and seq <= M32:
                        sender.next_seq = seq + 1
                        pad = -(w1 - 18) & 3
                        total = fixed + w1 + pad
                        iv = base + seq
                        pt = inner[20:w1] + trailers[pad << 8 | w4 & 0xFF]
                        w4 = w4 & 0xFF00 | IPPROTO_ESP
                        pkt = pack_hdr(w0, total, idf, w4, -(w0 + total + idf + w4 + addrs) % 0xFFFF, addrs, spi, seq,
                                       iv) + enc(pack_nonce(salt, iv), pt, pack_ii(spi, seq))
                        sender.sent.append(pkt)
                        return pkt
                return general(inner, faults)
            return fast

        def fast_injected(inner: bytes, faults=None) -> bytes:
            if faults is not None or type(inner) is not bytes or len(inner) < 20 or inner[0] != 0x45:
                return general(inner, faults)
            w0, w1, idf, w4, _, addrs = unpack_v4(inner)
            seq = sender.next_seq
            if w1 < 20 or w1 > len(inner) or idf & 0x3FFF or seq > M32:
                return general(inner, faults)
            sender.next_seq = seq + 1
            pad = -(w1 - 18) & 3
            total = fixed + w1 + pad
            w4 = (w4 & 0xFF00) | IPPROTO_ESP
            iv = injected(ivs)
            pkt = b"".join((pack_hdr_noiv(w0, total, idf, w4, -(w0 + total + idf + w4 + addrs) % 0xFFFF, addrs, spi, seq), iv,
                            enc(salt + iv, inner[20:w1] + trailers[pad << 8 | inner[9]], pack_ii(spi, seq))))
            sender.sent.append(pkt)
            return pkt
        return fast_injected

    outer_sum = sender._v4_sum + IPPROTO_ESP
    src, dst = sender._src, sender._dst
    pack_hdr, pack_q = struct.Struct("!BBHHHBBH4s4s").pack, struct.Struct("!Q").pack

    def fast_tunnel(inner: bytes, faults=None) -> bytes:
        n = len(inner)
        seq = sender.next_seq
        if faults is not None or type(inner) is not bytes or n < 20 or seq > M32:
            return general(inner, faults)
        v = inner[0] >> 4
        if v == 4:
            nh, tos = 4, inner[1]
        elif v == 6 and n >= 40:
            nh, tos = 41, (inner[0] << 4 | inner[1] >> 4) & 0xFF
        else:
            return general(inner, faults)
        sender.next_seq = seq + 1
        pad = -(n + 2) & 3
        total = 20 + esp_overhead + n + pad
        ident = seq & 0xFFFF or 1  # never 0, as Sender._outer
        c = outer_sum + tos + total + ident
        c = (c & 0xFFFF) + (c >> 16)
        c = (c & 0xFFFF) + (c >> 16)
        aad = pack_ii(spi, seq)
        iv = pack_q(base + seq) if injected is None else injected(ivs)
        pkt = b"".join((pack_hdr(0x45, tos, total, ident, 0, 64, IPPROTO_ESP, ~c & 0xFFFF, src, dst), aad, iv,
                        enc(salt + iv, inner + trailers[pad << 8 | nh], aad)))
        sender.sent.append(pkt)
        return pkt
    return fast_tunnel


def receiver_fast(receiver: "Receiver", general: Callable[[bytes], "Unprotected"]) -> Callable[[bytes], "Unprotected"] | None:
    """unprotect() for a combined-mode ESP SA (in-order, well-formed packets here, the rest via general), or None."""
    from harness.esp.receiver import Unprotected

    found = _aead(receiver.sa)
    if found is None:
        return None
    _, dec, salt = found
    sa = receiver.sa
    spi, ivs, icvs = sa.spi, sa.encr.iv_size, sa.encr.icv_size
    unpack, pack_v4 = _V4_ESP.unpack_from, _V4.pack
    pack_nonce = struct.Struct(f"!{len(salt)}sQ").pack
    ct_at = 28 + ivs
    min_total = ct_at + icvs + 4
    ct_icv = ct_at + icvs
    tunnel = sa.mode == "tunnel"
    tails = [DEFAULT_PADDING[p] + bytes((p,)) for p in range(256)]  # padding, then Pad Length
    new = tuple.__new__

    def fast(outer: bytes) -> Unprotected:
        if type(outer) is not bytes:
            return general(outer)
        try:
            w0, w1, idf, w4, _, addrs, pkt_spi, seq, iv = unpack(outer)
        except struct_error:  # too short for IPv4 + ESP headers and IV
            return general(outer)
        window = receiver.window  # looked up per packet: callers may replace it
        top = window.top
        if (w0 >> 8 != 0x45 or w4 & 0xFF != IPPROTO_ESP or idf & 0x3FFF or pkt_spi != spi or seq <= top
                or not min_total <= w1 <= len(outer) or (w1 - ct_icv) & 3):
            return general(outer)
        try:
            pt = dec(pack_nonce(salt, iv), outer[ct_at:w1], outer[20:28])
        except InvalidTag:
            return general(outer)
        pad = pt[-2]
        if not pt.endswith(tails[pad], 0, -1):  # the default padding and Pad Length, in range (else cut < 0)
            return general(outer)
        nh = pt[-1]
        cut = w1 - ct_icv - 2 - pad
        if tunnel:
            if nh != IPPROTO_IPIP or cut < 20 or pt[0] >> 4 != 4 or (pt[2] << 8 | pt[3]) != cut:
                return general(outer)
            inner = pt[:cut]
        elif nh == IPPROTO_UDP and (cut < 8 or (pt[4] << 8 | pt[5]) != cut) or nh == 59:
            return general(outer)
        else:
            total = 20 + cut
            w4 = (w4 & 0xFF00) | nh
            inner = pack_v4(w0, total, idf, w4, -(w0 + total + idf + w4 + addrs) % 0xFFFF, addrs) + pt[:cut]
        # ReplayWindow.accept for seq > top, its state update inlined
        shift = seq - top
        window.bits = ((window.bits << shift) | 1) & window._mask if shift < window.size else 1
        window.top = seq
        receiver.accepted += 1
        return new(Unprotected, (inner, nh, seq, spi, pad, 0))
    return fast
