"""Inner packets, addresses and keys for the ESP/AH unit tests (built by hand: no scapy on this path)."""
from __future__ import annotations

import os
import struct

from harness.crypto import encr, integ
from harness.esp.ip import IPPROTO_UDP, addr_bytes, ipv4_header, ipv6_header
from harness.esp.udpencap import udp_header

ADDRS = {
    ("transport", 4): ("198.18.1.1", "198.18.2.2"), ("tunnel", 4): ("198.18.0.1", "198.18.0.2"),
    ("transport", 6): ("2001:db8::1", "2001:db8::2"), ("tunnel", 6): ("2001:db8:ffff::1", "2001:db8:ffff::2"),
}
INNER = {4: ("198.18.1.1", "198.18.2.2"), 6: ("2001:db8::1", "2001:db8::2")}


def inner_packet(v: int, size: int, sport: int = 1024, dport: int = 7) -> bytes:
    """An IPv4/IPv6 UDP packet with `size` payload bytes between the INNER addresses."""
    src, dst = (addr_bytes(a) for a in INNER[v])
    data = bytes((i * 7 + size) & 0xFF for i in range(size))
    udp = udp_header(src, dst, sport, dport, data) + data
    if v == 4:
        udp = udp[:6] + struct.pack("!H", 0) + udp[8:]
        return ipv4_header(src, dst, IPPROTO_UDP, len(udp), ttl=63, ident=size) + udp
    return ipv6_header(src, dst, IPPROTO_UDP, len(udp), hop_limit=63) + udp


def keymat(encryption: str | None, integrity: str | None) -> tuple[bytes, bytes]:
    """Random keying material of the right sizes (the largest key length for encryption)."""
    ek = b""
    if encryption is not None:
        e = encr(encryption)
        ek = os.urandom(e.key_size(max(e.key_bits)) if e.key_bits else e.key_size())
    ik = os.urandom(integ(integrity).key_size) if integrity is not None else b""
    return ek, ik
