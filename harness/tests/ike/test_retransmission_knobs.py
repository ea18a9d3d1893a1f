"""The built-in end's knobs for retransmission and window cases (RFC 7296 s2.1, s2.3), back to back in memory:
requests left unanswered on purpose (Bugs.ignore_requests), the last answered request sent again byte for byte
(IkeEndpoint.resend_last), and a request sent with a chosen Message ID (IkeEndpoint.probe(message_id=))."""
from __future__ import annotations

import pytest

from harness.errors import IkeError
from harness.ike.config import Bugs
from harness.ike.events import ChildSaEstablished, Informational, ProbeAnswered, RequestIgnored, ResentAnswered
from harness.ike.window import RequestWindow
from harness.tests.ike.test_endpoint import B, cfg, establish, of, pair


@pytest.mark.rfc(7296, "2.1", "MUST")
def test_an_ignored_request_is_reported_at_each_arrival_and_retransmitted_the_same():
    a, b, w, clock = establish(cb=cfg("sun", bugs=Bugs(ignore_requests=("INFORMATIONAL",))))
    sa = a.established()[0]
    b.drain_events()
    w.run(a.liveness(sa))
    for step in (1.0, 2.0, 4.0):  # a's timeout 1 s, back-off 2
        clock.advance(step)
        w.tick()
    got = of(b.drain_events(), RequestIgnored)
    assert [g.exchange for g in got] == ["INFORMATIONAL"] * 4
    assert len({g.datagram for g in got}) == 1 and len({g.message_id for g in got}) == 1
    assert [y.at - x.at for x, y in zip(got, got[1:])] == [1.0, 2.0, 4.0]
    assert not of(a.drain_events(), Informational)  # nothing answered


def test_an_ignored_ike_sa_init_leaves_no_state_at_the_responder():
    a, b, w, _ = pair(cfg("moon"), cfg("sun", bugs=Bugs(ignore_requests=("IKE_SA_INIT",))))
    w.run(a.initiate(B))
    (got,) = of(b.drain_events(), RequestIgnored)
    assert (got.exchange, got.message_id) == ("IKE_SA_INIT", 0) and not b.sas and not b.half_open


@pytest.mark.rfc(7296, "2.1", "MUST")
def test_a_resent_request_is_answered_from_the_cache_and_not_processed_again():
    a, b, w, _ = establish()
    sa = a.established()[0]
    a.drain_events()
    w.run(a.create_child(sa))
    assert len(of(a.drain_events(), ChildSaEstablished)) == 1
    b.drain_events()
    sent = len(w.log)
    w.run(a.resend_last(sa))
    (again,) = of(a.drain_events(), ResentAnswered)
    assert again.exchange == "CREATE_CHILD_SA" and again.first == again.again == w.log[-1].data
    assert len(w.log) == sent + 2 and not b.drain_events()  # one request, one cached response, nothing processed
    assert len(sa.children) == 2 == len(b.established()[0].children)


def test_resend_last_needs_an_answered_request():
    w = RequestWindow()
    with pytest.raises(IkeError, match="answered"):
        from harness.ike.endpoint import IkeEndpoint

        IkeEndpoint.resend_last(None, type("Sa", (), {"window": w})())  # type: ignore[arg-type]
    w.sent(w.allocate(), [b"req"], 0.0, "INFORMATIONAL")
    done = w.answered(0)
    assert w.last is done and done.datagrams == [b"req"]


@pytest.mark.rfc(7296, "2.3", "MUST")
@pytest.mark.parametrize("ahead", [1, 5])
def test_a_request_beyond_the_window_is_not_answered_and_takes_no_message_id(ahead: int):
    a, b, w, _ = establish()
    sa = a.established()[0]
    a.drain_events()
    expected = b.established()[0].responses.next_expected
    w.run(a.probe(sa, [], message_id=sa.window.next_id + ahead))
    assert not of(a.drain_events(), ProbeAnswered)
    assert b.established()[0].responses.next_expected == expected
    w.run(a.liveness(a.established()[0]))
    assert [e.message_id for e in of(a.drain_events(), Informational) if e.asked_by_us] == [expected]


def test_the_endpoint_counts_the_datagrams_it_retransmits():
    a, b, w, clock = establish(cb=cfg("sun", bugs=Bugs(ignore_requests=("INFORMATIONAL",))))
    before = a.retransmitted
    w.run(a.liveness(a.established()[0]))
    for step in (1.0, 2.0):
        clock.advance(step)
        w.tick()
    assert a.retransmitted - before == 2 and b.retransmitted == 0
