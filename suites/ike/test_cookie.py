"""COOKIE (RFC 7296 s2.6): the built-in responder demands a cookie before it keeps any state, and the peer's
initiator must retry its IKE_SA_INIT with N(COOKIE) as the first payload (the built-in parser refuses it
anywhere else); then with an INVALID_KE_PAYLOAD after the cookie, the order s2.6 gives (the cookie first,
the KE group then). The built-in end records each cookie it demanded; establishment proves the retry verified.
And the other way: a peer responder over its half-open threshold (strongSwan) or in its busy mode (Libreswan) demands a
cookie of the built-in initiator.
"""
from __future__ import annotations

import pytest

from harness.cases.pair import WAIT
from harness.errors import LabError, NoAnswer, PeerFault
from harness.ike.events import CookieDemanded, CookieRetry, IkeSaDeleted
from harness.ike.exchange_init import HALF_OPEN
from harness.report.checks import should

pytestmark = [pytest.mark.lab, pytest.mark.root]


@pytest.mark.ends("peer>builtin")
@pytest.mark.rfc(7296, "2.6", "MUST")
@pytest.mark.parametrize("groups", ["same-group", "then-invalid-ke"])
def test_the_initiator_retries_with_the_responders_cookie(pair, groups, record_property):
    ike = {"same-group": ("aes128gcm16-prfsha256-ecp256", "aes128gcm16-prfsha256-ecp256"),
           "then-invalid-ke": ("aes128gcm16-prfsha256-ecp256-ecp384", "aes128gcm16-prfsha256-ecp384")}[groups]
    conn = pair.connection(ike_proposals=[ike[0]])
    pair.builtin.config_overrides["require_cookie"] = True
    mark = len(pair.builtin.events)
    try:
        pair.establish(conn, pair.mirror(conn, ike_proposals=[ike[1]]))
    finally:
        pair.builtin.config_overrides.clear()
    demanded = [e for e in pair.builtin.events[mark:] if isinstance(e, CookieDemanded)]
    failed = [e.notify for e in pair.builtin.events[mark:] if type(e).__name__ == "ExchangeFailed"]
    record_property("cookies", ", ".join(f"{'stale' if e.stale else 'none'} (group {e.group})" for e in demanded))
    if not demanded or demanded[0].stale:
        raise LabError(f"the built-in responder, told to require a cookie, demanded none first: {demanded}")
    if groups == "then-invalid-ke" and "INVALID_KE_PAYLOAD" not in failed:
        raise LabError(f"the built-in responder sent no INVALID_KE_PAYLOAD for group 19 (its errors: {failed})")
    pair.traffic(count=1)
    pair.terminate()


@pytest.mark.ends("builtin>peer")
@pytest.mark.rfc(7296, "2.6", "SHOULD")
def test_a_busy_responder_demands_a_cookie_and_takes_the_retry(pair, request, record_property):
    """A responder that detects many half-open IKE SAs SHOULD answer IKE_SA_INIT with N(COOKIE) (s2.6), and then takes
    the retry that returns it. strongSwan is pushed over its threshold by the built-in end, which leaves half-open IKE
    SAs (Bugs.half_open) until one request is answered with a cookie (charon.cookie_threshold_ip, 3 from one address by
    default); Libreswan's threshold (ddos-ike-threshold, 25000 by default) is out of a case's reach, so it is put in its
    own busy mode (whack --ddos-busy) instead."""
    peer = pair.responder
    conn = pair.connection()
    mark = len(pair.builtin.events)
    if peer.adapter.implementation == "libreswan":
        peer.adapter.demand_cookies(True)
        try:
            pair.establish(conn)
        finally:
            peer.adapter.demand_cookies(False)
    else:
        pair.load(conn)
        try:
            left = _half_open_until_a_cookie(pair, conn, MOST_HALF_OPEN)
            record_property("half_open", left)
            if not should(request, left is not None, "RFC 7296 s2.6 SHOULD",
                          f"{peer.name} answered {MOST_HALF_OPEN} IKE_SA_INIT requests from one address without a COOKIE "
                          "while each left it a half-open IKE SA"):
                return
            mark = len(pair.builtin.events)
            pair.establish(conn)
        finally:
            peer.adapter.drop_half_open(pair.address(pair.initiator))
    retries = [e for e in pair.builtin.events[mark:] if isinstance(e, CookieRetry)]
    record_property("cookies", ", ".join(f"{len(e.cookie)} octets" for e in retries))
    if not retries:
        raise PeerFault(f"{peer.name}, busy, established without demanding a cookie", "RFC 7296 s2.6 SHOULD")
    pair.traffic(count=1)
    pair.terminate()


MOST_HALF_OPEN = 40  # above charon's cookie_threshold (30) and block_threshold (5): a responder that never asks is NON-STRICT


def _half_open_until_a_cookie(pair, conn, most: int) -> int | None:
    """How many half-open IKE SAs the built-in initiator left at the responder (Bugs.half_open) until one of its
    IKE_SA_INIT requests was answered with N(COOKIE); None if none was within `most`, or the responder stopped answering."""
    end = pair.builtin
    try:
        for n in range(1, most + 1):
            end.bugs.half_open = True  # the loaded configuration holds this Bugs object
            since = len(end.events)
            end.initiate(conn.name, wait=False)
            try:
                end.wait_event(lambda e: isinstance(e, IkeSaDeleted) and e.reason == HALF_OPEN, since, WAIT,
                               f"the responder's answer to half-open IKE_SA_INIT number {n}")
            except NoAnswer:
                return None
            if any(isinstance(e, CookieRetry) for e in end.events[since:]):
                return n
        return None
    finally:
        end.bugs.half_open = False
