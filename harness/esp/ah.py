"""The AH codec (RFC 4302): the header, the ICV over the packet with mutable fields zeroed.

`AhCodec(sa).seal(header, proto_pos, payload, next_header, seq, faults)` puts AH between an
IP header chain and payload; `open(packet, view, seq)` verifies a received one.
`icv_input(header, ...)` zeroes what RFC 4302 s3.3.3.1 calls mutable:
- IPv4: DSCP/ECN, flags, fragment offset, TTL, header checksum; options other than
  EOL, NOP, Security, Extended Security, Commercial Security, Router Alert and SDMDD
  (Appendix A.1, by option number) are zeroed whole.
- IPv6: traffic class, flow label, hop limit; hop-by-hop and destination options whose
  type has the "may change en route" bit (0x20) get their data zeroed; a type 0 or 2
  routing header is put in the form it will have at the destination (Appendix A.2:
  Segments Left 0, the final address in the IPv6 destination).
AUTH_AES_*_GMAC (RFC 4543 s3.5): an 8-byte IV follows the Sequence Number, the nonce
is salt || IV, and the whole zeroed packet (IV included) is the AAD. With ESN the
high-order 32 bits are appended after the packet for the ICV (RFC 4302 s2.5.1).
"""
from __future__ import annotations

import hmac
import os
import struct
from typing import Callable

from harness.errors import MalformedPacket, PacketDropped, ParseError
from harness.esp.cipher import IntegContext
from harness.esp.faults import Faults
from harness.esp.ip import DEST_OPTS, HOP_BY_HOP, ROUTING, IpView, checksum
from harness.esp.sa import SecurityAssociation

M32 = 0xFFFFFFFF
IPPROTO_AH = 51
_AH = struct.Struct("!BBHII")
_pack_I = struct.Struct("!I").pack
# option numbers (type & 0x1f) RFC 4302 Appendix A.1 lists as immutable
IMMUTABLE_V4_OPTIONS = frozenset((0, 1, 2, 5, 6, 20, 21))


def _zero_v4_options(hdr: bytearray, end: int) -> None:
    i = 20
    while i < end:
        t = hdr[i]
        if t == 0:  # End of Option List: the rest is padding
            return
        if t == 1:
            i += 1
            continue
        if i + 1 >= end or hdr[i + 1] < 2 or i + hdr[i + 1] > end:
            raise ParseError("IPv4 header", "option length", i + 1, f"option {t} overruns the {end}-byte header")
        n = hdr[i + 1]
        if t & 0x1F not in IMMUTABLE_V4_OPTIONS:
            hdr[i:i + n] = bytes(n)
        i += n


def _zero_v6_options(hdr: bytearray, start: int, end: int) -> None:
    i = start
    while i < end:
        t = hdr[i]
        if t == 0:  # Pad1
            i += 1
            continue
        if i + 1 >= end or i + 2 + hdr[i + 1] > end:
            raise ParseError("IPv6 options header", "option length", i + 1, f"option {t} overruns its header")
        n = hdr[i + 1]
        if t & 0x20:
            hdr[i + 2:i + 2 + n] = bytes(n)
        i += 2 + n


def _routing_at_destination(hdr: bytearray, off: int) -> None:
    """Rewrite a type 0/2 routing header and the IPv6 destination as the final destination will see them."""
    rtype, segleft = hdr[off + 2], hdr[off + 3]
    if rtype not in (0, 2) or segleft == 0:
        return
    n = hdr[off + 1] // 2
    if segleft > n:
        raise ParseError("IPv6 routing header", "segments left", off + 3, f"{segleft} exceeds its {n} addresses")
    addrs = [bytes(hdr[off + 8 + 16 * k:off + 24 + 16 * k]) for k in range(n)]
    dst = bytes(hdr[24:40])
    while segleft:
        k = n - segleft
        dst, addrs[k] = addrs[k], dst
        segleft -= 1
    hdr[24:40] = dst
    hdr[off + 3] = 0
    hdr[off + 8:off + 8 + 16 * n] = b"".join(addrs)


def zero_mutable(header: bytes, sending: bool) -> bytes:
    """header (IP header plus the extension headers before AH) with its mutable fields zeroed (RFC 4302 s3.3.3.1)."""
    hdr = bytearray(header)
    if hdr[0] >> 4 == 4:
        hdr[1] = 0
        hdr[6:9] = b"\x00\x00\x00"
        hdr[10:12] = b"\x00\x00"
        _zero_v4_options(hdr, (hdr[0] & 0xF) * 4)
        return bytes(hdr)
    hdr[0:4] = b"\x60\x00\x00\x00"
    hdr[7] = 0
    nh, off = hdr[6], 40
    while off < len(hdr):
        if off + 2 > len(hdr):
            raise ParseError("IPv6 header chain", f"extension header {nh}", off, "truncated")
        ext_len = (hdr[off + 1] + 1) * 8
        if nh in (HOP_BY_HOP, DEST_OPTS):
            _zero_v6_options(hdr, off + 2, min(off + ext_len, len(hdr)))
        elif nh == ROUTING and sending:
            _routing_at_destination(hdr, off)
        nh, off = hdr[off], off + ext_len
    return bytes(hdr)


def _fix_lengths(hdr: bytearray, pos: int, total: int) -> None:
    hdr[pos] = IPPROTO_AH
    if hdr[0] >> 4 == 4:
        struct.pack_into("!H", hdr, 2, total)
        hdr[10:12] = b"\x00\x00"
        struct.pack_into("!H", hdr, 10, checksum(bytes(hdr[: (hdr[0] & 0xF) * 4])))
    else:
        struct.pack_into("!H", hdr, 4, total - 40)


class AhCodec:
    """AH framing and ICV for one SA."""

    __slots__ = ("sa", "spi", "esn", "integ", "icv_size", "iv_size", "align", "_random")

    def __init__(self, sa: SecurityAssociation, random: Callable[[int], bytes] = os.urandom) -> None:
        i = sa.integ
        assert i is not None, "an AH SA has an integrity transform (checked by SecurityAssociation)"
        self.sa, self.spi, self.esn = sa, sa.spi, sa.esn
        self.integ = IntegContext(i, sa.integrity_key)
        self.icv_size, self.iv_size = i.icv_size, i.iv_size
        self.align = sa.ah_align
        self._random = random

    def _length(self, v4: bool) -> int:
        n = 12 + self.iv_size + self.icv_size
        return n + (-n % (self.align or (4 if v4 else 8)))

    def seal(self, header: bytes, proto_pos: int, payload: bytes, next_header: int, seq: int, f: Faults) -> bytes:
        """header (its field at proto_pos becomes 51, lengths fixed) || AH || payload."""
        v4 = header[0] >> 4 == 4
        ah_len = self._length(v4)
        spi = self.spi if f.spi is None else f.spi
        iv = b""
        if self.iv_size:
            iv = self._random(self.iv_size) if f.iv is None else f.iv
        if f.padding is not None:  # chosen ICV padding (Linux sends whatever bytes were there)
            ah_len = 12 + self.iv_size + self.icv_size + len(f.padding)
        fixed = _AH.pack(next_header, ah_len // 4 - 2, 0, spi, seq & M32) + iv
        hdr = bytearray(header)
        _fix_lengths(hdr, proto_pos, len(hdr) + ah_len + len(payload))
        hdr_b = bytes(hdr)
        pad = bytes(ah_len - len(fixed) - self.icv_size) if f.padding is None else f.padding
        data = zero_mutable(hdr_b, True) + fixed + bytes(self.icv_size) + pad + payload
        if self.esn:
            data += _pack_I(seq >> 32 & M32 if f.seq_hi is None else f.seq_hi)
        icv = self.integ.icv(data, iv)
        if f.corrupt_icv:
            icv = icv[:-1] + bytes((icv[-1] ^ 1,))
        return hdr_b + fixed + icv + pad + payload

    def parse(self, packet: bytes, view: IpView) -> tuple[int, int, int]:
        """(next header, SPI, low 32 bits of seq) of the AH at view.offset; MalformedPacket when it is wrong."""
        off, end = view.offset, view.length
        if end - off < 12:
            raise MalformedPacket("AH", "header", off, f"{end - off} bytes, need 12")
        nh, plen, _res, spi, seq_low = _AH.unpack_from(packet, off)
        return nh, spi, seq_low

    def open(self, packet: bytes, view: IpView, seq: int) -> tuple[bytes, int]:
        """(payload after AH, its Next Header) once the ICV verifies; PacketDropped/MalformedPacket otherwise."""
        off, end, spi = view.offset, view.length, self.spi
        nh, plen = packet[off], packet[off + 1]
        ah_len = (plen + 2) * 4
        need = 12 + self.iv_size + self.icv_size
        if ah_len < need or off + ah_len > end:
            raise MalformedPacket("AH", "payload length", off + 1, f"AH of {ah_len} bytes: need {need}, have {end - off}", spi, seq)
        ivend = off + 12 + self.iv_size
        iv = packet[off + 12:ivend]
        icv = packet[ivend:ivend + self.icv_size]
        data = (zero_mutable(packet[:off], False) + packet[off:ivend] + bytes(self.icv_size) + packet[ivend + self.icv_size:end])
        if self.esn:
            data += _pack_I(seq >> 32 & M32)
        if not hmac.compare_digest(self.integ.icv(data, iv), icv):
            raise PacketDropped("bad_icv", f"AH SPI {spi:#010x} seq {seq}: ICV does not verify", spi, seq)
        return packet[off + ah_len:end], nh
