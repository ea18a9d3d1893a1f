"""COOKIE (RFC 7296 s2.6): the built-in responder demands a cookie before it keeps any state, and the peer's
initiator must retry its IKE_SA_INIT with N(COOKIE) as the first payload (the built-in parser refuses it
anywhere else); then with an INVALID_KE_PAYLOAD after the cookie, the order s2.6 gives (the cookie first,
the KE group then). The built-in end records each cookie it demanded; establishment proves the retry verified.
And the other way: a Libreswan responder in its busy mode demands a cookie of the built-in initiator.
"""
from __future__ import annotations

import pytest

from harness.errors import LabError, PeerFault
from harness.ike.events import CookieDemanded, CookieRetry

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
@pytest.mark.rfc(7296, "2.6", "MUST")
def test_a_busy_responder_demands_a_cookie_and_takes_the_retry(pair, record_property):
    """The peer in its own 'busy' mode answers the built-in initiator's IKE_SA_INIT with N(COOKIE) and then
    establishes with the retry that returns it."""
    peer = pair.responder
    if peer.adapter.implementation != "libreswan":
        pytest.skip("harness gap: strongSwan demands cookies past charon.cookie_threshold half-open IKE SAs, a "
                    "strongswan.conf setting read at start, and the pooled charon is not restarted per case")
    mark = len(pair.builtin.events)
    peer.adapter.demand_cookies(True)
    try:
        pair.establish(pair.connection())
    finally:
        peer.adapter.demand_cookies(False)
    retries = [e for e in pair.builtin.events[mark:] if isinstance(e, CookieRetry)]
    record_property("cookies", ", ".join(f"{len(e.cookie)} octets" for e in retries))
    if not retries:
        raise PeerFault(f"{peer.name} in busy mode (whack --ddos-busy) established without demanding a cookie",
                        "RFC 7296 s2.6 MUST")
    pair.traffic(count=1)
    pair.terminate()
