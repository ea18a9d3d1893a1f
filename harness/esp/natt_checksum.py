"""The checksum a transport-mode packet needs after UDP-encapsulated ESP crossed a NAT (RFC 3948 s3.1.2).

The sender summed its TCP or UDP checksum over the addresses it knew (its pseudo-header); the NAT changed the outer
addresses, which transport mode reuses for the inner packet, so the checksum no longer matches them. Of the three ways
s3.1.2 allows, `fix_transport_checksum` takes the second: recompute the TCP/UDP checksum over the addresses the packet
now has. A UDP checksum of zero (none sent, RFC 768) stays zero; other protocols are unchanged (ICMP sums no
pseudo-header). IPv4 only, as NAT is here.
"""
from __future__ import annotations

import struct

from harness.errors import ParseError
from harness.esp.ip import checksum, parse_ip

IPPROTO_TCP, IPPROTO_UDP = 6, 17
_CHECKSUM_AT = {IPPROTO_TCP: 16, IPPROTO_UDP: 6}  # offset of the checksum field in the TCP / UDP header


def transport_checksum(packet: bytes) -> int | None:
    """The TCP or UDP checksum packet's own addresses call for (its field counted as zero), None for other protocols
    or an IPv6 packet; ParseError for a truncated header."""
    view = parse_ip(packet, "transport-mode packet")
    at = _CHECKSUM_AT.get(view.proto)
    if view.version != 4 or at is None:
        return None
    seg = packet[view.offset:view.length]
    if len(seg) < at + 2:
        raise ParseError("transport-mode packet", "TCP/UDP header", view.offset, f"{len(seg)} octets: truncated")
    pseudo = view.src + view.dst + struct.pack("!BBH", 0, view.proto, len(seg))
    value = checksum(pseudo + seg[:at] + b"\0\0" + seg[at + 2:])
    return 0xFFFF if value == 0 and view.proto == IPPROTO_UDP else value  # UDP sends a computed zero as all ones


def fix_transport_checksum(packet: bytes) -> bytes:
    """packet with its TCP or UDP checksum recomputed over its own addresses (RFC 3948 s3.1.2, second way); a UDP
    checksum of zero and other protocols are left as they are."""
    want = transport_checksum(packet)
    if want is None:
        return packet
    view = parse_ip(packet, "transport-mode packet")
    at = view.offset + _CHECKSUM_AT[view.proto]
    if view.proto == IPPROTO_UDP and packet[at:at + 2] == b"\0\0":
        return packet
    return packet[:at] + struct.pack("!H", want) + packet[at + 2:]
