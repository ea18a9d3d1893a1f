"""ICMP/ICMPv6 echo from inside a namespace with a raw socket (no `ping` binary needed)."""
from __future__ import annotations

import errno
import os
import select
import socket
import struct
import time
from ipaddress import ip_address

from harness.lab import netns

ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY = 8, 0
ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY = 128, 129
ICMPV6_NEXT_HEADER = 58


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of data."""
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def echo_request(version: int, ident: int, seq: int, payload: bytes) -> bytes:
    """An ICMP (version 4, with checksum) or ICMPv6 (version 6, kernel fills the checksum) echo request."""
    if version == 4:
        body = struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, 0, ident, seq) + payload
        return body[:2] + struct.pack("!H", checksum(body)) + body[4:]
    return struct.pack("!BBHHH", ICMPV6_ECHO_REQUEST, 0, 0, ident, seq) + payload


def _open(version: int) -> socket.socket:
    if version == 4:
        return socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    return socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)


def ping(namespace: str, address: str, count: int = 1, timeout: float = 2.0, payload: bytes = b"ipsec-interop") -> int:
    """Send `count` echo requests from namespace to address; the number of matching replies received."""
    version = ip_address(address).version
    s = netns.run_in(namespace, _open, version)
    ident = os.getpid() & 0xFFFF
    answered = 0
    try:
        for seq in range(count):
            try:
                s.sendto(echo_request(version, ident, seq, payload), (address, 0))
            except OSError as e:
                if e.errno not in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EACCES):
                    raise
                continue  # no route (or refused): this request is simply unanswered
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                if not select.select([s], [], [], left)[0]:
                    break
                data, src = s.recvfrom(65535)
                if version == 4:
                    data = data[(data[0] & 0x0F) * 4:]  # IPv4 raw sockets deliver the IP header
                if len(data) < 8 or ip_address(src[0]) != ip_address(address):
                    continue
                kind, _, _, rid, rseq = struct.unpack_from("!BBHHH", data)
                if kind == (ICMP_ECHO_REPLY if version == 4 else ICMPV6_ECHO_REPLY) and rid == ident and rseq == seq:
                    answered += 1
                    break
    finally:
        s.close()
    return answered


def ipv4_packet(src: str, dst: str, proto: int, payload: bytes, ident: int = 0, ttl: int = 64) -> bytes:
    """A complete IPv4 packet (20-octet header with checksum) around payload."""
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0x4000, ttl, proto, 0,
                         ip_address(src).packed, ip_address(dst).packed)
    return header[:10] + struct.pack("!H", checksum(header)) + header[12:] + payload


def echo_packet(src: str, dst: str, ident: int, seq: int, payload: bytes = b"ipsec-interop", reply: bool = False) -> bytes:
    """An ICMP (IPv4 addresses) or ICMPv6 (IPv6 addresses) echo request (or reply) from src to dst, as a complete IP packet."""
    if ip_address(src).version == 6:
        return echo6_packet(src, dst, ident, seq, payload, reply)
    body = struct.pack("!BBHHH", ICMP_ECHO_REPLY if reply else ICMP_ECHO_REQUEST, 0, 0, ident, seq) + payload
    body = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
    return ipv4_packet(src, dst, socket.IPPROTO_ICMP, body)


def echo6_packet(src: str, dst: str, ident: int, seq: int, payload: bytes = b"ipsec-interop", reply: bool = False,
                 ext: bytes = b"", ext_type: int = ICMPV6_NEXT_HEADER) -> bytes:
    """An ICMPv6 echo request (or reply) from src to dst as a complete IPv6 packet, its checksum over the
    pseudo-header (RFC 8200 s8.1); ext: extension headers between the IPv6 header and ICMPv6, ext_type the first
    one's type (each header's own Next Header field must lead to 58)."""
    s, d = ip_address(src).packed, ip_address(dst).packed
    body = struct.pack("!BBHHH", ICMPV6_ECHO_REPLY if reply else ICMPV6_ECHO_REQUEST, 0, 0, ident, seq) + payload
    pseudo = s + d + struct.pack("!I3xB", len(body), ICMPV6_NEXT_HEADER)
    body = body[:2] + struct.pack("!H", checksum(pseudo + body)) + body[4:]
    first = ext_type if ext else ICMPV6_NEXT_HEADER
    return struct.pack("!IHBB16s16s", 0x60000000, len(ext) + len(body), first, 64, s, d) + ext + body


def parse_echo(packet: bytes) -> tuple[str, str, int, int, int, bytes] | None:
    """(src, dst, ICMP type, identifier, sequence, payload) of an IPv4 ICMP or IPv6 ICMPv6 echo packet (IPv6:
    after any Hop-by-Hop or Destination Options headers), else None; the type is given as ICMP's (8 request, 0 reply)."""
    if packet and packet[0] >> 4 == 6:
        return _parse_echo6(packet)
    if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != socket.IPPROTO_ICMP:
        return None
    ihl = (packet[0] & 0x0F) * 4
    kind, _, _, ident, seq = struct.unpack_from("!BBHHH", packet, ihl)
    if kind not in (ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY):
        return None
    return (str(ip_address(packet[12:16])), str(ip_address(packet[16:20])), kind, ident, seq, packet[ihl + 8:])


def _parse_echo6(packet: bytes) -> tuple[str, str, int, int, int, bytes] | None:
    nh, off = packet[6] if len(packet) >= 40 else -1, 40
    while nh in (0, 60) and off + 8 <= len(packet):  # Hop-by-Hop, Destination Options
        nh, off = packet[off], off + (packet[off + 1] + 1) * 8
    if nh != ICMPV6_NEXT_HEADER or len(packet) < off + 8:
        return None
    kind, _, _, ident, seq = struct.unpack_from("!BBHHH", packet, off)
    if kind not in (ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY):
        return None
    return (str(ip_address(packet[8:24])), str(ip_address(packet[24:40])),
            ICMP_ECHO_REQUEST if kind == ICMPV6_ECHO_REQUEST else ICMP_ECHO_REPLY, ident, seq, packet[off + 8:])
