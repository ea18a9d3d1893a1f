"""UDP datagrams and TCP segments as complete IP packets, and their parsing (no scapy on this path).

The built-in end sends these through a Child SA as its own traffic (`udp_packet`, `tcp_packet`, RFC 768, RFC 9293
s3.1) and reads what comes back (`parse_transport`). IPv4 packets leave Don't Fragment clear, so that the sender
(or a router) may fragment them; checksums cover the pseudo-header of either family (RFC 768, RFC 8200 s8.1).
"""
from __future__ import annotations

import itertools
import struct
from ipaddress import ip_address
from typing import NamedTuple

from harness.errors import ParseError
from harness.esp.ip import checksum, ipv4_header, ipv6_header, parse_ip

UDP, TCP = 17, 6
_IDENTS = itertools.cycle(range(1, 0x10000))  # IPv4 Identification: distinct for datagrams that may be fragmented
SYN, RST, ACK = 0x02, 0x04, 0x10


class Transport(NamedTuple):
    """A UDP datagram or TCP segment read from an IP packet."""

    proto: int
    src: str
    dst: str
    sport: int
    dport: int
    payload: bytes
    seq: int = 0     # TCP only
    ack: int = 0     # TCP only
    flags: int = 0   # TCP only


def _pseudo(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    if len(src) == 4:
        return src + dst + struct.pack("!BBH", 0, proto, length)
    return src + dst + struct.pack("!I3xB", length, proto)


def _ip(src: str, dst: str, proto: int, body: bytes, ident: int) -> bytes:
    s, d = ip_address(src).packed, ip_address(dst).packed
    csum_at = 6 if proto == UDP else 16
    c = checksum(_pseudo(s, d, proto, len(body)) + body) or (0xFFFF if proto == UDP else 0)
    body = body[:csum_at] + struct.pack("!H", c) + body[csum_at + 2:]
    if len(s) == 4:
        return ipv4_header(s, d, proto, len(body), ident=ident or next(_IDENTS)) + body
    return ipv6_header(s, d, proto, len(body)) + body


def udp_packet(src: str, dst: str, sport: int, dport: int, payload: bytes, ident: int = 0) -> bytes:
    """A UDP datagram from src:sport to dst:dport as a complete IPv4 (without DF; Identification ident, else the next
    of a counter) or IPv6 packet."""
    return _ip(src, dst, UDP, struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload, ident)


def tcp_packet(src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int, ident: int = 0) -> bytes:
    """A TCP segment without data or options (a SYN, an RST) as a complete IPv4 or IPv6 packet."""
    body = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, 65535, 0, 0)
    return _ip(src, dst, TCP, body, ident)


def parse_transport(packet: bytes) -> Transport | None:
    """The UDP datagram or TCP segment in a whole (not fragmented) IP packet, else None."""
    view = parse_ip(packet, "inner packet")
    data = packet[view.offset:view.length]
    src, dst = str(ip_address(view.src)), str(ip_address(view.dst))
    if view.proto == UDP and len(data) >= 8:
        sport, dport, length = struct.unpack_from("!HHH", data)
        return Transport(UDP, src, dst, sport, dport, data[8:length])
    if view.proto == TCP and len(data) >= 20:
        sport, dport, seq, ack, off, flags = struct.unpack_from("!HHIIBB", data)
        return Transport(TCP, src, dst, sport, dport, data[(off >> 4) * 4:], seq, ack, flags)
    return None


def reset_for(segment: Transport) -> bytes:
    """The RST a closed port answers segment with (RFC 9293 s3.10.7.1): for a segment without ACK, <SEQ=0>
    <ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK> (a SYN counts one); else <SEQ=SEG.ACK><CTL=RST>."""
    if segment.flags & ACK:
        return tcp_packet(segment.dst, segment.src, segment.dport, segment.sport, segment.ack, 0, RST)
    length = len(segment.payload) + (1 if segment.flags & SYN else 0)
    return tcp_packet(segment.dst, segment.src, segment.dport, segment.sport, 0, segment.seq + length, RST | ACK)


def with_checksum(packet: bytes) -> bytes:
    """packet with its UDP or TCP checksum computed over the pseudo-header (a NIC's checksum offload done in
    software: a frame read from a veth with an AF_PACKET socket may carry only the partial sum); packet itself if it
    is neither or a fragment."""
    try:
        view = parse_ip(packet, "packet")
    except ParseError:
        return packet
    if view.proto not in (UDP, TCP) or (view.proto == UDP and view.length - view.offset < 8) or \
            (view.proto == TCP and view.length - view.offset < 20):
        return packet
    at = view.offset + (6 if view.proto == UDP else 16)
    body = packet[view.offset:at] + b"\0\0" + packet[at + 2:view.length]
    c = checksum(_pseudo(view.src, view.dst, view.proto, len(body)) + body) or (0xFFFF if view.proto == UDP else 0)
    return packet[:at] + struct.pack("!H", c) + packet[at + 2:]
