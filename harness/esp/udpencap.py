"""UDP encapsulation of ESP and the IKE framing on port 4500 (RFC 3948).

- `udp_header(src, dst, sport, dport, payload)`: the 8-byte UDP header; checksum 0 over
  IPv4 (RFC 3948 s2.1), computed over IPv6 (RFC 8200 s8.1).
- `frame_ike(message)` / `unframe_ike(datagram)`: the 4-byte non-ESP marker (s2.2).
- `classify(datagram) -> "esp" | "ike" | "keepalive"` for a UDP payload on port 4500 (s2.2, s2.3).
"""
from __future__ import annotations

import struct

from harness.errors import ParseError
from harness.esp.ip import IPPROTO_UDP, checksum

NAT_T_PORT = 4500
NON_ESP_MARKER = b"\x00\x00\x00\x00"
KEEPALIVE = b"\xff"


def udp_header(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    """UDP header for payload between packed addresses src and dst (checksum only over IPv6)."""
    length = 8 + len(payload)
    if len(src) == 4:
        return struct.pack("!HHHH", sport, dport, length, 0)
    pseudo = src + dst + struct.pack("!IxxxB", length, IPPROTO_UDP) + struct.pack("!HHHH", sport, dport, length, 0) + payload
    return struct.pack("!HHHH", sport, dport, length, checksum(pseudo) or 0xFFFF)


def frame_ike(message: bytes) -> bytes:
    """An IKE message as a UDP payload on port 4500: the non-ESP marker in front."""
    return NON_ESP_MARKER + message


def unframe_ike(datagram: bytes) -> bytes:
    """The IKE message of a port-4500 UDP payload; ParseError when it is ESP or a keepalive."""
    kind = classify(datagram)
    if kind != "ike":
        raise ParseError("UDP 4500 payload", "non-ESP marker", 0, f"absent: this is {kind}, not IKE")
    return datagram[4:]


def classify(datagram: bytes) -> str:
    """What a UDP payload on port 4500 carries: "keepalive" (0xFF), "ike" (non-ESP marker) or "esp"."""
    if datagram == KEEPALIVE:
        return "keepalive"
    if len(datagram) < 4:
        raise ParseError("UDP 4500 payload", "length", 0, f"{len(datagram)} bytes: neither a keepalive, IKE nor ESP")
    if datagram[:4] == NON_ESP_MARKER:
        return "ike"
    if len(datagram) < 8:
        raise ParseError("UDP 4500 payload", "ESP header", 0, f"{len(datagram)} bytes, need 8 for SPI and sequence number")
    return "esp"
