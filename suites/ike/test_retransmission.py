"""Retransmission and the request window against every peer (RFC 7296 s2.1-2.4).

The built-in end leaves the peer's requests unanswered on purpose (Bugs.ignore_requests) and records each arrival:
the peer must send the same request again, byte for byte, and SHOULD wait longer each time (s2.1). It sends its
own last request again (IkeEndpoint.resend_last): the peer must answer from its cache with the same bytes and not
act twice (s2.1). It sends a request with a Message ID beyond the peer's window (IkeEndpoint.probe(message_id=)):
the peer must not answer it nor take its Message ID (s2.3, s3.10.1), and the IKE SA keeps working. And the window
itself (s2.3): a peer that announces SET_WINDOW_SIZE > 1 must answer that many outstanding requests, and no peer may
have more requests outstanding toward the built-in end than the window the built-in end announced.

The peers' timers are their own (measured, recorded as properties): the strongSwan adapter writes retransmit_timeout
2 s, retransmit_tries 3 (base 1.8 by default: resends at 2, 5.6, 12.1 s, gives up at 23.7 s); Libreswan keeps its
default retransmit-interval (500 ms, doubling) and retransmit-timeout (60 s). Every wait is a condition with a
generous bound; the back-off is judged by the ratio of the last interval to the first, a SHOULD.
"""
from __future__ import annotations

import threading
import time

import pytest

from harness.cases.pair import CASE, WAIT
from harness.errors import LabError, NoAnswer, NotEstablished, PeerFault
from harness.ike.events import ChildSaEstablished, IkeSaEstablished, Informational, ProbeAnswered, RequestIgnored, ResentAnswered
from harness.report.checks import should

pytestmark = [pytest.mark.lab, pytest.mark.root]
ARRIVALS = 4  # arrivals of one request awaited (three intervals); fewer are judged as they are once the peer stops
GROWN = 1.3  # back-off: the last interval at least this many times the first (doubling peers measure 4x-8x)
QUIET = 2.0  # seconds a request outside the window must stay unanswered (peers answer in tens of ms here)


def _peer(pair):
    """The reference peer of a builtin>peer or peer>builtin pair."""
    return next(e for e in pair.ends if not e.builtin)


def _ike(pair, peer) -> set:
    """The peer's IKE SAs of the case by identity (SPIs, or Libreswan's state number) with their Child SA SPIs."""
    return {(s.spi_i, s.spi_r, s.serial, frozenset((c.spi_in, c.spi_out) for c in s.children))
            for s in pair.ike_sas(peer)}


def _arrivals(pair, exchange: str, mark: int) -> list[RequestIgnored]:
    """The arrivals since mark of the first unanswered request of exchange (same IKE SA, same Message ID)."""
    got = [e for e in pair.builtin.events[mark:] if isinstance(e, RequestIgnored) and e.exchange == exchange]
    return [e for e in got if (e.spi_i, e.message_id) == (got[0].spi_i, got[0].message_id)] if got else []


def _judge_retransmissions(pair, peer, exchange: str, mark: int, request, record_property) -> None:
    """The peer resent the unanswered request exactly (MUST) and with growing intervals (SHOULD)."""
    try:
        pair.wait(lambda: len(_arrivals(pair, exchange, mark)) >= ARRIVALS,
                  f"{ARRIVALS} arrivals of {peer.name}'s unanswered {exchange} request")
    except NoAnswer:
        pass  # the peer stopped earlier (its tries ran out): judged below on what came
    got = _arrivals(pair, exchange, mark)
    intervals = [round(b.at - a.at, 3) for a, b in zip(got, got[1:])]
    record_property("arrivals", len(got))
    record_property("intervals_s", ", ".join(f"{i:.3f}" for i in intervals))
    if not got:
        raise PeerFault(f"{peer.name} sent no {exchange} request to leave unanswered", "RFC 7296 s2.1 MUST")
    if len(got) < 2:
        raise PeerFault(f"{peer.name} did not retransmit its unanswered {exchange} request (Message ID "
                        f"{got[0].message_id}) within {WAIT:.0f} s", "RFC 7296 s2.1 MUST")
    differ = [i for i, e in enumerate(got) if e.datagram != got[0].datagram]
    if differ:
        raise PeerFault(f"{peer.name} retransmitted its {exchange} request (Message ID {got[0].message_id}) with other "
                        f"bytes at arrivals {differ} ({[len(got[i].datagram) for i in differ]} octets, first "
                        f"{len(got[0].datagram)}): s2.1 wants it retransmitted exactly", "RFC 7296 s2.1 MUST")
    should(request, len(intervals) >= 2 and intervals[-1] >= GROWN * intervals[0], "RFC 7296 s2.1 SHOULD",
           f"{peer.name} retransmitted its {exchange} request at intervals {intervals} s: not increasing")


@pytest.mark.ends("peer>builtin")
@pytest.mark.rfc(7296, "2.1", "MUST")
def test_the_initiator_retransmits_an_unanswered_ike_sa_init(pair, request, record_property):
    """The built-in responder does not answer the peer's IKE_SA_INIT: the peer sends the same request again
    (same SPIi, Message ID 0, same bytes) at growing intervals."""
    peer = _peer(pair)
    pair.load(pair.connection())
    mark = len(pair.builtin.events)
    pair.builtin.bugs.ignore_requests = ("IKE_SA_INIT",)
    try:
        try:
            peer.adapter.initiate(CASE, timeout=1.0)  # returns at once: the IKE SA cannot come up
        except NotEstablished:
            pass
        else:
            raise PeerFault(f"{peer.name} established with a responder that answers nothing", pair.requirement)
        _judge_retransmissions(pair, peer, "IKE_SA_INIT", mark, request, record_property)
    finally:
        pair.builtin.bugs.ignore_requests = ()


@pytest.mark.ends("builtin>peer", "peer>builtin")
@pytest.mark.rfc(7296, "2.1", "MUST")
@pytest.mark.parametrize("exchange", ["INFORMATIONAL", "CREATE_CHILD_SA"])
def test_the_peer_retransmits_an_unanswered_request_inside_the_ike_sa(pair, exchange, request, record_property):
    """On an established IKE SA the built-in end leaves the peer's liveness check (DPD delay 2 s) or its Child SA
    rekey unanswered: the peer sends the same protected request again (same Message ID, same bytes) at growing
    intervals, and stops only by giving the IKE SA up."""
    dpd = {"dpd": {"delay": 2, "action": "clear"}} if exchange == "INFORMATIONAL" else {}
    pair.establish(pair.connection(child_proposals=["aes128gcm16"], **dpd))
    peer = _peer(pair)
    mark = len(pair.builtin.events)
    pair.builtin.bugs.ignore_requests = (exchange,)
    command = None
    try:
        if exchange == "CREATE_CHILD_SA":
            pair.needs(peer, "rekey")  # an external device without a hook for it: a skip naming the key
            command = _in_background(lambda: peer.adapter.rekey(CASE, "child"))
        _judge_retransmissions(pair, peer, exchange, mark, request, record_property)
    finally:
        pair.builtin.bugs.ignore_requests = ()
        _join(command)


def _in_background(fn) -> threading.Thread:
    """Run fn (a peer's control command that may wait for the exchange it starts) without waiting for it."""
    t = threading.Thread(target=fn, name="peer-command", daemon=True)
    t.start()
    return t


def _join(t: threading.Thread | None) -> None:
    """Wait for a background peer command before the case's teardown uses the peer's control channel again."""
    if t is not None:
        t.join(WAIT)
        if t.is_alive():
            raise LabError(f"a peer control command started by the case did not return within {WAIT:.0f} s")


@pytest.mark.ends("builtin>peer", "peer>builtin")
@pytest.mark.rfc(7296, "2.1", "MUST")
@pytest.mark.parametrize("exchange", ["INFORMATIONAL", "CREATE_CHILD_SA"])
def test_a_retransmitted_request_is_answered_from_the_cache_with_the_same_bytes(pair, exchange, record_property):
    """The built-in end sends its last request again, byte for byte, after the peer answered it: the peer must
    retransmit its response (the same bytes) and not process the request again (no second Child SA, no change)."""
    pair.establish(pair.connection(child_proposals=["aes128gcm16"]))
    end, peer = pair.builtin, _peer(pair)
    mark = len(end.events)
    if exchange == "INFORMATIONAL":
        end.request(lambda ep: ep.liveness(ep.established()[0]))
        end.wait_event(lambda e: isinstance(e, Informational) and e.asked_by_us, mark, WAIT,
                       f"{peer.name}'s answer to a liveness check")
    else:
        end.request(lambda ep: ep.create_child(ep.established()[0]))
        end.wait_event(lambda e: isinstance(e, ChildSaEstablished), mark, WAIT, "CREATE_CHILD_SA for a second Child SA")
        pair.wait(lambda: sum(len(s.children) for s in pair.ike_sas(peer)) == 2, f"{peer.name} holds both Child SAs")
    before = _ike(pair, peer)
    mark = len(end.events)
    end.request(lambda ep: ep.resend_last(ep.established()[0]))
    try:
        again = end.wait_event(lambda e: isinstance(e, ResentAnswered), mark, WAIT,
                               f"{peer.name}'s answer to the {exchange} request sent again")
    except NoAnswer as e:
        raise PeerFault(f"{peer.name} did not answer its {exchange} request retransmitted: {e}", pair.requirement) from None
    record_property("response_octets", f"{len(again.first)} / {len(again.again)}")
    if again.again != again.first:
        raise PeerFault(f"{peer.name} answered the retransmitted {exchange} request (Message ID {again.message_id}) "
                        f"with other bytes ({len(again.again)} octets, first {len(again.first)}): a new response, not "
                        "its cached one", pair.requirement)
    after = _ike(pair, peer)
    if after != before:
        raise PeerFault(f"{peer.name} changed its SAs on a retransmitted {exchange} request: {sorted(before, key=str)} "
                        f"became {sorted(after, key=str)}", pair.requirement)
    pair.traffic(count=1)
    pair.terminate()


@pytest.mark.ends("builtin>peer", "peer>builtin")
@pytest.mark.rfc(7296, "2.3", "MUST")
@pytest.mark.parametrize("beyond", [0, 4], ids=["next-outside", "four-further"])
def test_a_request_beyond_the_window_is_ignored(pair, beyond, record_property):
    """With the peer's window (1 unless it announced SET_WINDOW_SIZE) a request whose Message ID is the first
    outside it (next + window, while next was never sent) or four further gets no answer and takes no Message ID
    (s3.10.1: 'the invalid request MUST NOT be acknowledged'; INVALID_MESSAGE_ID in a request of its own is
    optional); the next request with the right Message ID is answered and the Child SA still carries traffic."""
    pair.establish(pair.connection(child_proposals=["aes128gcm16"]))
    end, peer = pair.builtin, _peer(pair)
    window, next_id = end.read(lambda ep: (ep.established()[0].peer_window, ep.established()[0].window.next_id))
    record_property("peer_window", window)
    before = _ike(pair, peer)
    mark = len(end.events)
    sent = next_id + window + beyond
    end.request(lambda ep: ep.probe(ep.established()[0], [], message_id=sent))

    def answered() -> list[ProbeAnswered]:
        return [e for e in end.events[mark:] if isinstance(e, ProbeAnswered) and e.message_id == sent]

    deadline = time.monotonic() + QUIET
    while time.monotonic() < deadline and not answered():
        time.sleep(0.1)
    if answered():
        raise PeerFault(f"{peer.name} answered a request with Message ID {sent} (expected {next_id}, window {window}): "
                        f"{answered()[0]}", pair.requirement)
    mark_live = len(end.events)
    end.request(lambda ep: ep.liveness(ep.established()[0]))
    try:
        live = end.wait_event(lambda e: isinstance(e, Informational) and e.asked_by_us, mark_live, WAIT,
                              f"{peer.name} answers a liveness check with Message ID {next_id}")
    except NoAnswer as e:
        raise PeerFault(f"{peer.name} no longer answers on the IKE SA after a request beyond its window: {e}",
                        pair.requirement) from None
    if live.message_id != next_id:
        raise PeerFault(f"the liveness check after the request beyond the window went with Message ID "
                        f"{live.message_id}, not {next_id}", pair.requirement)
    notified = [e for e in end.events[mark:] if isinstance(e, Informational) and not e.asked_by_us
                and "INVALID_MESSAGE_ID" in e.payloads]
    record_property("invalid_message_id_sent", bool(notified))
    if _ike(pair, peer) != before:
        raise PeerFault(f"{peer.name} changed its SAs after a request beyond its window", pair.requirement)
    pair.traffic(count=1)
    if answered():
        raise PeerFault(f"{peer.name} answered the request with Message ID {sent} late (after {QUIET:.0f} s)",
                        pair.requirement)
    pair.terminate()


@pytest.mark.ends("builtin>peer", "peer>builtin")
@pytest.mark.rfc(7296, "2.3", "MUST")
def test_the_peer_answers_as_many_requests_as_its_window_admits(pair, record_property):
    """A peer that announced SET_WINDOW_SIZE n > 1 gets n requests at once from the built-in end (liveness checks,
    Message IDs next..next+n-1) and must answer all of them."""
    pair.establish(pair.connection())
    end, peer = pair.builtin, _peer(pair)
    window = end.read(lambda ep: ep.established()[0].peer_window)
    record_property("peer_window", window)
    if window == 1:
        pytest.skip(f"{peer.name} announced no SET_WINDOW_SIZE (window 1, RFC 7296 s2.3 default): a window of one "
                    "outstanding request is what every other case uses")
    mark = len(end.events)
    end.request(lambda ep: [d for _ in range(window) for d in ep.liveness(ep.established()[0])])
    pair.wait(lambda: len([e for e in end.events[mark:] if isinstance(e, Informational) and e.asked_by_us]) >= window,
              f"{peer.name} answers {window} liveness checks sent at once (its window)")
    pair.traffic(count=1)
    pair.terminate()


@pytest.mark.ends("builtin>peer", "peer>builtin")
@pytest.mark.rfc(7296, "2.3", "MUST")
@pytest.mark.parametrize("window", [1, 3], ids=["window-1", "window-3"])
def test_the_peer_keeps_to_the_window_the_built_in_end_announces(pair, window, record_property):
    """The built-in end announces its window (SET_WINDOW_SIZE when > 1) and then answers none of the peer's
    requests, while the peer is asked for three (a Child SA rekey, an IKE SA rekey, a liveness check after the DPD
    delay): the peer must not have more requests outstanding (distinct Message IDs unanswered) than that window.
    Its first request must go out again (s2.1) before the count is read, so the others had their time; then the
    built-in end answers again, and the IKE SA rekey asked for while it held back must follow: the peer did have
    more to send than it sent (else the count proves nothing, and the case is BROKEN saying so)."""
    pair.builtin.config_overrides["window_size"] = window
    try:
        pair.establish(pair.connection(child_proposals=["aes128gcm16"], dpd={"delay": 2, "action": "clear"}))
    finally:
        pair.builtin.config_overrides.clear()
    end, peer = pair.builtin, _peer(pair)
    mark = len(end.events)
    end.bugs.ignore_requests = ("CREATE_CHILD_SA", "INFORMATIONAL")
    command = None
    try:
        command = _in_background(lambda: (peer.adapter.rekey(CASE, "child"), peer.adapter.rekey(CASE, "ike")))

        def ignored() -> list[RequestIgnored]:
            return [e for e in end.events[mark:] if isinstance(e, RequestIgnored)]

        def first_resent() -> bool:
            got = ignored()
            return bool(got) and sum(1 for e in got if e.message_id == got[0].message_id) >= 3
        try:
            pair.wait(first_resent, f"{peer.name}'s first unanswered request arrives three times")
        except NoAnswer:
            pass  # judged on what came: the window is what this case checks
        got = ignored()
        ids = sorted({e.message_id for e in got})
        record_property("requests", ", ".join(f"{e.exchange} {e.message_id}" for e in
                                              {(e.exchange, e.message_id): e for e in got}.values()))
        record_property("outstanding_max", len(ids))
        if not got:
            raise PeerFault(f"{peer.name} sent no request after a Child SA rekey, an IKE SA rekey and a DPD delay",
                            pair.requirement)
        if len(ids) > window:
            raise PeerFault(f"{peer.name} had {len(ids)} requests outstanding (Message IDs {ids}) toward a window of "
                            f"{window}", "RFC 7296 s2.3 MUST NOT")
        held = len(end.events)
        end.bugs.ignore_requests = ()

        try:
            pair.wait(lambda: [e for e in end.events[held:] if isinstance(e, IkeSaEstablished) and e.rekeyed_from],
                      f"{peer.name}'s IKE SA rekey, asked for while its Child SA rekey went unanswered")
        except NoAnswer:
            raise LabError(f"{peer.name} did not send the IKE SA rekey it was asked for while it held back: the window "
                           f"count ({len(ids)} outstanding) proves nothing") from None
        record_property("held_back", "IKE SA rekey")
    finally:
        end.bugs.ignore_requests = ()
        _join(command)
