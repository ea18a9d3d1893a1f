"""Message IDs, window and retransmission (RFC 7296 s2.1-2.3); NAT detection and cookies (s2.23, s2.6)."""
from __future__ import annotations

import hashlib

import pytest

from harness.errors import IkeError
from harness.ike.natt import cookie_valid, make_cookie, nat_detected, nat_detection_hash
from harness.ike.window import RequestWindow, ResponseCache


@pytest.mark.rfc(7296, "2.1", "MUST")
def test_retransmission_backoff_and_give_up():
    w = RequestWindow(timeout=1.0, backoff=2.0, max_sends=4)
    mid = w.allocate()
    w.sent(mid, [b"req"], now=0.0)
    assert w.due(0.5) == ([], []) and w.next_due() == 1.0
    assert w.due(1.0)[0] == [b"req"] and w.next_due() == 3.0     # second send at 1, next after 2 s
    assert w.due(3.0)[0] == [b"req"] and w.next_due() == 7.0     # third at 3, next after 4 s
    assert w.due(7.0)[0] == [b"req"] and w.next_due() == 15.0
    resend, dead = w.due(15.0)
    assert resend == [] and [d.message_id for d in dead] == [0] and w.next_due() is None


@pytest.mark.rfc(7296, "2.3", "MUST")
def test_window_limits_outstanding_requests():
    w = RequestWindow()
    w.sent(w.allocate(), [b"a"], 0)
    assert not w.can_send()
    with pytest.raises(IkeError):
        w.allocate()
    assert w.answered(0).datagrams == [b"a"] and w.answered(0) is None
    assert w.allocate() == 1
    w2 = RequestWindow(window_size=3)
    for _ in range(3):
        w2.sent(w2.allocate(), [b"x"], 0)
    assert not w2.can_send()
    w2.answered(2)  # 0 still outstanding: ID 3 is still inside the window (0..2 + 3)
    assert not w2.can_send()
    w2.answered(0)
    assert w2.can_send() and w2.allocate() == 3


@pytest.mark.rfc(7296, "2.2", "MUST")
def test_response_cache():
    c = ResponseCache()
    assert c.classify(0) == "new" and c.classify(1) == "invalid"
    c.store(0, [b"resp0"])
    assert c.classify(0) == "retransmit" and c.responses[0] == [b"resp0"] and c.classify(1) == "new"
    c.store(1, [b"resp1"])
    assert c.classify(0) == "invalid" and c.classify(1) == "retransmit"


@pytest.mark.rfc(7296, "2.23", "MUST")
def test_nat_detection():
    si, sr = bytes(range(8)), bytes(8)
    h = nat_detection_hash(si, sr, "198.18.0.1", 500)
    assert h == hashlib.sha1(si + sr + bytes([198, 18, 0, 1]) + b"\x01\xf4").digest()
    assert not nat_detected(si, sr, "198.18.0.1", 500, [b"x" * 20, h])
    assert nat_detected(si, sr, "198.18.0.1", 4500, [h])
    assert not nat_detected(si, sr, "198.18.0.1", 4500, [])
    assert len(nat_detection_hash(si, sr, "2001:db8::1", 500)) == 20


@pytest.mark.rfc(7296, "2.6", "SHOULD")
def test_cookie():
    c = make_cookie(b"s" * 32, 3, b"n" * 32, "198.18.0.1", b"i" * 8)
    assert c[0] == 3 and len(c) == 33
    assert cookie_valid({3: b"s" * 32}, c, b"n" * 32, "198.18.0.1", b"i" * 8)
    assert not cookie_valid({3: b"t" * 32}, c, b"n" * 32, "198.18.0.1", b"i" * 8)
    assert not cookie_valid({3: b"s" * 32}, c, b"n" * 32, "198.18.0.2", b"i" * 8)
    assert not cookie_valid({4: b"s" * 32}, c, b"n" * 32, "198.18.0.1", b"i" * 8)
    assert not cookie_valid({3: b"s" * 32}, c[:-1], b"n" * 32, "198.18.0.1", b"i" * 8)
