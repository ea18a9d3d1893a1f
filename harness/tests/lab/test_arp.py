"""The ARP probe that proves a peer's link before cases use it: its frame, and the replies it accepts."""
from __future__ import annotations

import struct

from harness.lab import arp


def _reply(sender_ip: bytes, to_mac: bytes = arp.PROBE_MAC, op: int = 2) -> bytes:
    body = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, b"\x02\x49\x00\x00\x01\x00", sender_ip, to_mac, bytes(4))
    return to_mac + b"\x02\x49\x00\x00\x01\x00" + b"\x08\x06" + body


def test_the_probe_is_a_broadcast_request_with_sender_ip_zero() -> None:
    f = arp.probe_frame("198.18.0.3")
    assert f[:6] == b"\xff" * 6 and f[6:12] == arp.PROBE_MAC and f[12:14] == b"\x08\x06"
    assert struct.unpack("!H", f[20:22])[0] == 1 and f[28:32] == bytes(4) and f[38:42] == bytes([198, 18, 0, 3])
    assert len(f) == 42


def test_only_the_targets_reply_to_the_probe_counts() -> None:
    assert arp.is_reply(_reply(bytes([198, 18, 0, 3])), "198.18.0.3")
    assert not arp.is_reply(_reply(bytes([198, 18, 0, 4])), "198.18.0.3")          # another host
    assert not arp.is_reply(_reply(bytes([198, 18, 0, 3]), op=1), "198.18.0.3")    # a request, not a reply
    assert not arp.is_reply(_reply(bytes([198, 18, 0, 3]), to_mac=b"\x02" * 6), "198.18.0.3")  # not to us
    assert not arp.is_reply(b"\x00" * 20, "198.18.0.3")
