"""Find the ESP or AH header (`locate`) or the IKE message (`locate_ike`) inside a captured IP packet (IPv4/IPv6, raw or UDP-encapsulated on port 4500)."""
from __future__ import annotations

import struct
from dataclasses import dataclass

from harness.errors import ParseError

IPPROTO_UDP, IPPROTO_ESP, IPPROTO_AH = 17, 50, 51
NAT_T_PORT = 4500
_V6_EXT = {0, 43, 60}  # hop-by-hop, routing, destination options: skipped to reach ESP/AH
IPPROTO_FRAGMENT = 44


@dataclass(frozen=True)
class Located:
    """Where the IPsec header sits: ip is the whole packet trimmed to its IP length."""

    protocol: str  # "esp" | "ah"
    version: int  # 4 | 6
    ip: bytes
    offset: int  # of the ESP/AH header in ip
    header_offset: int  # of the field naming it (IPv4 protocol byte, or the Next Header byte before it); -1 for UDP-encapsulated
    udp_encap: bool
    spi: int
    seq: int  # low 32 bits of the sequence number
    src: str
    dst: str


def _addr(raw: bytes) -> str:
    import ipaddress
    return str(ipaddress.ip_address(raw))


def locate(ip: bytes) -> Located | None:
    """The ESP/AH header of an IP packet; None if it carries neither (IKE, NAT keepalives, fragments...).

    ParseError (naming field and offset) when the IP or UDP header itself is malformed.
    """
    if not ip:
        raise ParseError("IP packet", "version", 0, "empty")
    v = ip[0] >> 4
    if v == 4:
        if len(ip) < 20:
            raise ParseError("IPv4 header", "length", 0, f"{len(ip)} bytes, less than 20")
        ihl = (ip[0] & 15) * 4
        total = struct.unpack_from("!H", ip, 2)[0]
        if ihl < 20 or total < ihl or total > len(ip):
            raise ParseError("IPv4 header", "total length", 2, f"{total} with IHL {ihl} in a {len(ip)}-byte packet")
        ip = ip[:total]  # drop link-layer padding
        if struct.unpack_from("!H", ip, 6)[0] & 0x3FFF:
            return None  # a fragment: not reassembled here
        proto, off, proto_at = ip[9], ihl, 9
        src, dst = _addr(ip[12:16]), _addr(ip[16:20])
    elif v == 6:
        if len(ip) < 40:
            raise ParseError("IPv6 header", "length", 0, f"{len(ip)} bytes, less than 40")
        plen = struct.unpack_from("!H", ip, 4)[0]
        if 40 + plen > len(ip):
            raise ParseError("IPv6 header", "payload length", 4, f"{plen} runs past the {len(ip)}-byte packet")
        ip = ip[: 40 + plen]
        proto, off, proto_at = ip[6], 40, 6
        src, dst = _addr(ip[8:24]), _addr(ip[24:40])
        while proto in _V6_EXT:
            if off + 2 > len(ip):
                raise ParseError("IPv6 extension header", "length", off, "truncated")
            proto_at = off
            proto, off = ip[off], off + (ip[off + 1] + 1) * 8
        if proto == IPPROTO_FRAGMENT:
            return None
    else:
        raise ParseError("IP packet", "version", 0, f"{v} is not 4 or 6")
    udp = False
    if proto == IPPROTO_UDP:
        if off + 8 > len(ip):
            raise ParseError("UDP header", "length", off, "truncated")
        sport, dport = struct.unpack_from("!HH", ip, off)
        if NAT_T_PORT not in (sport, dport):
            return None
        body = ip[off + 8:]
        if len(body) == 1 and body[0] == 0xFF:
            return None  # NAT-keepalive (RFC 3948 s2.3)
        if len(body) < 8 or body[:4] == b"\x00\x00\x00\x00":
            return None  # non-ESP marker: IKE on port 4500 (RFC 3948 s2.2)
        proto, off, udp, proto_at = IPPROTO_ESP, off + 8, True, -1
    if proto == IPPROTO_ESP:
        if off + 8 > len(ip):
            raise ParseError("ESP header", "SPI", off, f"only {len(ip) - off} bytes")
        spi, seq = struct.unpack_from("!II", ip, off)
        return Located("esp", v, ip, off, proto_at, udp, spi, seq, src, dst)
    if proto == IPPROTO_AH:
        if off + 12 > len(ip):
            raise ParseError("AH header", "SPI", off + 4, f"only {len(ip) - off} bytes")
        spi, seq = struct.unpack_from("!II", ip, off + 4)
        return Located("ah", v, ip, off, proto_at, udp, spi, seq, src, dst)
    return None


IKE_PORT = 500


@dataclass(frozen=True)
class IkeDatagram:
    """An IKE message found in a captured IP packet: data is without the non-ESP marker."""

    data: bytes
    src: str
    dst: str
    sport: int
    dport: int
    marker: bool  # arrived on port 4500 behind the non-ESP marker (RFC 3948 s2.2)


def locate_ike(ip: bytes) -> IkeDatagram | None:
    """The IKE message of an IP packet (UDP port 500, or 4500 with the non-ESP marker); None for anything else."""
    from harness.esp.ip import parse_ip
    view = parse_ip(ip, "IP packet")
    if view.proto != IPPROTO_UDP:
        return None
    off = view.offset
    if off + 8 > view.length:
        raise ParseError("UDP header", "length", off, "truncated")
    sport, dport = struct.unpack_from("!HH", ip, off)
    body = ip[off + 8:view.length]
    src, dst = _addr(view.src), _addr(view.dst)
    if NAT_T_PORT in (sport, dport):
        if len(body) < 8 or body[:4] != b"\x00\x00\x00\x00":
            return None  # ESP-in-UDP or a NAT-keepalive
        return IkeDatagram(body[4:], src, dst, sport, dport, True)
    if IKE_PORT in (sport, dport):
        return IkeDatagram(body, src, dst, sport, dport, False)
    return None
