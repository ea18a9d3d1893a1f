"""IP fragmentation of a packet that does not fit the link: IPv4 (RFC 791 s3.2) and IPv6 (RFC 8200 s4.5).

The built-in end fragments an ESP/AH packet after IPsec processing (RFC 4303 s3.3.4: outbound fragmentation
happens after ESP in transport mode; the receiver reassembles before ESP, s3.4.1), and, in tunnel mode, an inner
packet before it (s3.3.4: tunnel-mode ESP may carry a fragment). `fragment(packet, mtu, ident)` returns the
fragments, each at most mtu octets, their data in multiples of 8 octets but the last; a packet that fits is
returned alone. IPv4 copies the header into each fragment (options included) and sets MF and the offset; IPv6
inserts a Fragment header after the unfragmentable part (the IPv6 header and any Hop-by-Hop and Routing headers).
"""
from __future__ import annotations

import struct

from harness.errors import ConfigError, ParseError
from harness.esp.ip import FRAGMENT, HOP_BY_HOP, ROUTING, checksum

DF, MF = 0x4000, 0x2000
V6_UNFRAGMENTABLE = (HOP_BY_HOP, ROUTING)  # headers that stay before the Fragment header (RFC 8200 s4.5)


def fragment(packet: bytes, mtu: int, ident: int) -> list[bytes]:
    """packet as fragments of at most mtu octets (IPv4 Identification: ident's low 16 bits; IPv6: 32 bits)."""
    if not packet or packet[0] >> 4 not in (4, 6):
        raise ParseError("packet to fragment", "version", 0, "not an IPv4 or IPv6 packet")
    if len(packet) <= mtu:
        return [packet]
    return _fragment_v4(packet, mtu, ident) if packet[0] >> 4 == 4 else _fragment_v6(packet, mtu, ident)


def _pieces(data: bytes, room: int) -> list[tuple[int, bytes]]:
    """(offset, piece) of data in pieces of room octets rounded down to 8 (ConfigError if that is none)."""
    step = room // 8 * 8
    if step <= 0:
        raise ConfigError(f"fragment: an MTU that leaves {room} octets for data cannot carry a fragment")
    return [(at, data[at:at + step]) for at in range(0, len(data), step)]


def _fragment_v4(packet: bytes, mtu: int, ident: int) -> list[bytes]:
    ihl = (packet[0] & 0x0F) * 4
    total, flags = struct.unpack_from("!H", packet, 2)[0], struct.unpack_from("!H", packet, 6)[0]
    if flags & DF:
        raise ConfigError("fragment: the IPv4 packet has Don't Fragment set (RFC 791 s3.2)")
    if flags & 0x3FFF:
        raise ConfigError("fragment: the IPv4 packet is a fragment already")
    header, data = bytearray(packet[:ihl]), packet[ihl:total]
    pieces = _pieces(data, mtu - ihl)
    out = []
    for i, (at, piece) in enumerate(pieces):
        h = bytearray(header)
        struct.pack_into("!HHH", h, 2, ihl + len(piece), ident & 0xFFFF, (MF if i + 1 < len(pieces) else 0) | at // 8)
        h[10:12] = b"\x00\x00"
        struct.pack_into("!H", h, 10, checksum(bytes(h)))
        out.append(bytes(h) + piece)
    return out


def _fragment_v6(packet: bytes, mtu: int, ident: int) -> list[bytes]:
    end = 40 + struct.unpack_from("!H", packet, 4)[0]
    nh, off, nh_pos = packet[6], 40, 6
    while nh in V6_UNFRAGMENTABLE:
        if off + 8 > end:
            raise ParseError("packet to fragment", f"extension header {nh}", off, "truncated")
        nh_pos, nh, off = off, packet[off], off + (packet[off + 1] + 1) * 8
    if nh == FRAGMENT:
        raise ConfigError("fragment: the IPv6 packet is a fragment already")
    unfrag, data = bytearray(packet[:off]), packet[off:end]
    unfrag[nh_pos] = FRAGMENT
    out = []
    pieces = _pieces(data, mtu - off - 8)
    for i, (at, piece) in enumerate(pieces):
        h = bytearray(unfrag)
        struct.pack_into("!H", h, 4, off - 40 + 8 + len(piece))
        fh = struct.pack("!BBHI", nh, 0, at | (1 if i + 1 < len(pieces) else 0), ident & 0xFFFFFFFF)
        out.append(bytes(h) + fh + piece)
    return out
