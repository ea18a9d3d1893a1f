"""harness.esp.keepalive: a NAT-keepalive is due to a remote sent nothing for the interval (RFC 3948 s2.3)."""
from __future__ import annotations

import pytest

from harness.esp.keepalive import KeepaliveTimer
from harness.ike.loopback import FakeClock

R = ("198.18.1.3", 4500)


@pytest.mark.rfc(3948, "2.3", "SHOULD")
def test_due_after_an_idle_interval_and_not_while_other_packets_go():
    clock = FakeClock()
    t = KeepaliveTimer(2, clock)
    assert t.due([R]) == []  # first seen: its interval starts
    clock.advance(1.9)
    assert t.due([R]) == []
    clock.advance(0.1)
    assert t.due([R]) == [R] and t.due([R]) == []  # sent: the next one an interval later
    clock.advance(1.5)
    t.sent(R)  # an ESP packet went: no keepalive needed for another interval
    clock.advance(1.5)
    assert t.due([R]) == []
    clock.advance(0.5)
    assert t.due([R]) == [R]


def test_interval_zero_never_sends():
    clock = FakeClock()
    t = KeepaliveTimer(0, clock)
    clock.advance(100)
    assert t.due([R]) == []
