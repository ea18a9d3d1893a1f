"""An ARP probe (RFC 5227 s2.1.1: sender IP 0.0.0.0) written onto one link from its lab end, and the answer awaited.

It proves a peer node's link carries frames both ways before any case uses it, with no address needed on the
lab side: the request reaches the node only if the link delivers to it, the reply comes back only if the node's
stack sends on it. Call it inside the lab namespace (harness.lab.netns.run_in).
"""
from __future__ import annotations

import ipaddress
import select
import socket
import struct
import time

ETH_P_ARP = 0x0806
ETH_P_ALL = 0x0003  # the link is a bridge port: the bridge takes its frames before protocol (ARP) sockets see them
PROBE_MAC = bytes.fromhex("02490000fffe")  # locally administered; no lab node uses it


def probe_frame(target: str, src_mac: bytes = PROBE_MAC) -> bytes:
    """A broadcast ARP request for target from src_mac with sender IP 0.0.0.0 (a probe)."""
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, src_mac, bytes(4), bytes(6),
                      ipaddress.IPv4Address(target).packed)
    return b"\xff" * 6 + src_mac + struct.pack("!H", ETH_P_ARP) + arp


def is_reply(frame: bytes, target: str, src_mac: bytes = PROBE_MAC) -> bool:
    """True if frame is an ARP reply from target addressed to src_mac."""
    if len(frame) < 42 or frame[12:14] != struct.pack("!H", ETH_P_ARP):
        return False
    op, sender_ip, target_mac = struct.unpack("!H", frame[20:22])[0], frame[28:32], frame[32:38]
    return op == 2 and sender_ip == ipaddress.IPv4Address(target).packed and target_mac == src_mac


def probe(ifname: str, target: str, timeout: float = 20.0, interval: float = 0.5) -> float | None:
    """Send ARP probes for target on ifname until it answers; seconds it took, or None after timeout."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    try:
        s.bind((ifname, ETH_P_ALL))
        t0 = time.monotonic()
        frame = probe_frame(target)
        while time.monotonic() - t0 < timeout:
            s.send(frame)
            until = time.monotonic() + interval
            while (left := until - time.monotonic()) > 0:
                if not select.select([s], [], [], left)[0]:
                    break
                if is_reply(s.recv(2048), target):
                    return time.monotonic() - t0
        return None
    finally:
        s.close()
