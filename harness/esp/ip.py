"""Minimal IPv4/IPv6 header handling for the ESP/AH data plane (no scapy on this path).

- `parse_ip(packet) -> IpView`: version, addresses, where the payload after the IPv6
  extension headers that precede ESP/AH starts, and where the Next Header field pointing
  at it sits (so a caller can rewrite it). ParseError names the field and offset.
- `ipv4_header(...)`, `ipv6_header(...)`: outer headers for tunnel mode.
- `with_payload(view, packet, proto, payload)`: the packet's own header(s) over a new
  payload of protocol `proto` (lengths, Next Header/Protocol and IPv4 checksum fixed).
- `checksum(data)`: the Internet checksum (RFC 1071).
"""
from __future__ import annotations

import ipaddress
import struct
from typing import NamedTuple

from harness.errors import ParseError

# IPv6 extension headers that come before ESP/AH in a packet (RFC 4303 s3.1.1, RFC 4302 s3.1.1)
HOP_BY_HOP, ROUTING, FRAGMENT, DEST_OPTS = 0, 43, 44, 60
PRE_IPSEC_EXT = frozenset((HOP_BY_HOP, ROUTING, FRAGMENT, DEST_OPTS))
IPPROTO_IPIP, IPPROTO_IPV6, IPPROTO_UDP, IPPROTO_ESP, IPPROTO_AH, IPPROTO_NONE = 4, 41, 17, 50, 51, 59

_unpack_v4 = struct.Struct("!BBHHHBBH4s4s").unpack_from
_unpack_v6 = struct.Struct("!IHBB16s16s").unpack_from


class IpView(NamedTuple):
    """A parsed IP header chain: `offset` is where the payload of protocol `proto` starts."""

    version: int
    src: bytes
    dst: bytes
    proto: int  # protocol of the payload at `offset`
    offset: int  # header bytes (IPv4 header with options; IPv6 header plus skipped extension headers)
    proto_pos: int  # byte index of the Protocol / Next Header field that holds `proto`
    length: int  # the packet's length as its header states it (trailing bytes beyond are ignored)


_WORDS: dict[int, struct.Struct] = {}


def checksum(data: bytes) -> int:
    """The 16-bit one's complement Internet checksum of data (RFC 1071)."""
    n = len(data)
    if n & 1:
        data += b"\x00"
        n += 1
    words = _WORDS.get(n)
    if words is None:
        words = _WORDS[n] = struct.Struct(f"!{n // 2}H")
    s = sum(words.unpack(data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def parse_ip(packet: bytes, what: str = "IP packet", skip_ext: frozenset[int] = PRE_IPSEC_EXT) -> IpView:
    """The IpView of packet; IPv6 extension headers in skip_ext are stepped over. ParseError when malformed."""
    n = len(packet)
    if n < 1:
        raise ParseError(what, "version", 0, "empty packet")
    version = packet[0] >> 4
    if version == 4:
        if n < 20:
            raise ParseError(what, "IPv4 header", 0, f"{n} bytes, need 20")
        vihl, _tos, total, _id, frag, _ttl, proto, _ck, src, dst = _unpack_v4(packet)
        ihl = (vihl & 0xF) * 4
        if ihl < 20:
            raise ParseError(what, "IHL", 0, f"header length {ihl} is below 20")
        if total < ihl or total > n:
            raise ParseError(what, "total length", 2, f"{total} does not fit header {ihl} and packet {n} bytes")
        if frag & 0x3FFF:
            raise ParseError(what, "flags/fragment offset", 6, "a fragment: reassemble before IPsec processing (RFC 4303 s3.4.1)")
        return IpView(4, src, dst, proto, ihl, 9, total)
    if version == 6:
        if n < 40:
            raise ParseError(what, "IPv6 header", 0, f"{n} bytes, need 40")
        _vtf, plen, nh, _hl, src, dst = _unpack_v6(packet)
        total = 40 + plen
        if total > n:
            raise ParseError(what, "payload length", 4, f"{plen} runs past the packet's {n} bytes")
        off, pos = 40, 6
        while nh in skip_ext:
            if off + 8 > total:
                raise ParseError(what, f"extension header {nh}", off, "truncated")
            if nh == FRAGMENT:
                if struct.unpack_from("!H", packet, off + 2)[0] & 0xFFF9:
                    raise ParseError(what, "fragment header", off, "a fragment: reassemble before IPsec processing (RFC 4303 s3.4.1)")
                ext_len = 8
            else:
                ext_len = (packet[off + 1] + 1) * 8
            if off + ext_len > total:
                raise ParseError(what, f"extension header {nh} length", off + 1, f"{ext_len} bytes run past the packet")
            nh, pos, off = packet[off], off, off + ext_len
        return IpView(6, src, dst, nh, off, pos, total)
    raise ParseError(what, "version", 0, f"IP version {version}")


def ipv4_header(src: bytes, dst: bytes, proto: int, payload_len: int, tos: int = 0, ttl: int = 64,
                ident: int = 0, df: bool = False) -> bytes:
    """A 20-byte IPv4 header with its checksum."""
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, tos, 20 + payload_len, ident, 0x4000 if df else 0, ttl, proto, 0, src, dst)
    return hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]


def ipv6_header(src: bytes, dst: bytes, nh: int, payload_len: int, tclass: int = 0, hop_limit: int = 64,
                flow: int = 0) -> bytes:
    """A 40-byte IPv6 header."""
    return struct.pack("!IHBB16s16s", 0x60000000 | (tclass << 20) | flow, payload_len, nh, hop_limit, src, dst)


def with_payload(view: IpView, packet: bytes, proto: int, payload: bytes) -> bytes:
    """packet's header bytes (up to view.offset) over payload, the field at proto_pos set to proto."""
    off, pos = view.offset, view.proto_pos
    if view.version == 4:
        hdr = packet[:2] + (off + len(payload)).to_bytes(2, "big") + packet[4:9] + bytes((proto,)) + b"\x00\x00" + packet[12:off]
        return hdr[:10] + checksum(hdr).to_bytes(2, "big") + hdr[12:] + payload
    return (packet[:4] + (off - 40 + len(payload)).to_bytes(2, "big") + packet[6:pos] + bytes((proto,))
            + packet[pos + 1:off] + payload)


def addr_bytes(addr: str) -> bytes:
    """The packed form of an IPv4 or IPv6 address in text form."""
    return ipaddress.ip_address(addr).packed


def addr_text(packed: bytes) -> str:
    """The text form of a packed IPv4 or IPv6 address."""
    return str(ipaddress.ip_address(packed))
