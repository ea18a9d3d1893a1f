"""NAT-keepalives (RFC 3948 s2.3, s4): when an end behind a NAT sends one, and the interval every end of the lab uses.

A NAT-keepalive is one 0xFF octet on the UDP-encapsulation port, sent by the end behind a NAT to keep the NAT's
mapping alive; it is due when nothing else went to that remote for an interval. The lab configures every end with
LAB_INTERVAL (strongSwan charon.keep_alive, Libreswan pluto --keep-alive, the built-in end's KeepaliveTimer) so a case
sees several without idling for the usual 20 s.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable

LAB_INTERVAL = 2  # seconds


class KeepaliveTimer:
    """Which remotes a NAT-keepalive is due to: those sent nothing for `interval` seconds (0: never)."""

    def __init__(self, interval: float = LAB_INTERVAL, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval, self.clock = interval, clock
        self.last: dict[Hashable, float] = {}

    def sent(self, remote: Hashable) -> None:
        """Note a packet sent to remote (it restarts remote's interval)."""
        self.last[remote] = self.clock()

    def due(self, remotes: Iterable[Hashable]) -> list[Hashable]:
        """The remotes a keepalive is due to now (each then counted as sent); a remote seen first starts its interval."""
        if not self.interval:
            return []
        now, out = self.clock(), []
        for r in remotes:
            if now - self.last.setdefault(r, now) >= self.interval:
                self.last[r] = now
                out.append(r)
        return out
