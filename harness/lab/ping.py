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
    """An IPv4 ICMP echo request (or reply) from src to dst, as a complete IP packet."""
    body = struct.pack("!BBHHH", ICMP_ECHO_REPLY if reply else ICMP_ECHO_REQUEST, 0, 0, ident, seq) + payload
    body = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
    return ipv4_packet(src, dst, socket.IPPROTO_ICMP, body)


def parse_echo(packet: bytes) -> tuple[str, str, int, int, int, bytes] | None:
    """(src, dst, ICMP type, identifier, sequence, payload) of an IPv4 ICMP echo packet, else None."""
    if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != socket.IPPROTO_ICMP:
        return None
    ihl = (packet[0] & 0x0F) * 4
    kind, _, _, ident, seq = struct.unpack_from("!BBHHH", packet, ihl)
    if kind not in (ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY):
        return None
    return (str(ip_address(packet[12:16])), str(ip_address(packet[16:20])), kind, ident, seq, packet[ihl + 8:])
