"""Error notifies in the IKE_AUTH response, built-in initiator against a built-in responder (RFC 7296 s1.2, s2.21.2).

An error notify alone (no IDr, no AUTH) comes from a responder that has not authenticated
itself: the initiator reports it as received, answers nothing and drops the half-made IKE SA.
A Child SA error with IDr and AUTH that verify leaves the IKE SA standing.
"""
from __future__ import annotations

import pytest

from harness.ike.auth import Identity
from harness.ike.config import Bugs, IkeConfig
from harness.ike.endpoint import Datagram, IkeEndpoint
from harness.ike.events import ChildSaEstablished, ExchangeFailed, IkeSaDeleted, IkeSaEstablished
from harness.ike.loopback import FakeClock, Wire, seeded_rng

A, B = ("198.18.0.1", 500), ("198.18.0.2", 500)
PSK = b"ipsec-interop test PSK"
IKE_AUTH = 35


def cfg(side: str, **kw) -> IkeConfig:
    """A PSK connection of side (moon initiates, sun responds)."""
    return IkeConfig(local_id=Identity.of(f"{side}.example"), psk=PSK, **kw)


def run(responder_bugs: Bugs, tamper=None) -> tuple[IkeEndpoint, IkeEndpoint, Wire, FakeClock]:
    """moon initiates to sun (whose Bugs are given) back to back in memory until both are quiet."""
    clock = FakeClock()
    a = IkeEndpoint(cfg("moon"), A, clock, seeded_rng(1))
    b = IkeEndpoint(cfg("sun", bugs=responder_bugs), B, clock, seeded_rng(1001))
    w = Wire(a, b, tamper)
    w.run(a.initiate(B))
    return a, b, w, clock


def of(events: list, kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


def quiet_forever(a: IkeEndpoint, clock: FakeClock) -> bool:
    """True when a has no timer and sends nothing however far the clock moves (past every retransmission)."""
    if a.next_timer() is not None:
        return False
    sent = []
    for _ in range(100):
        clock.advance(a.config.retransmit_timeout * 2)
        sent += a.tick()
    return not sent


UNAUTHENTICATED = ["NO_PROPOSAL_CHOSEN", "TS_UNACCEPTABLE", "INTERNAL_ADDRESS_FAILURE"]


@pytest.mark.rfc(7296, "2.21.2", "MUST")
@pytest.mark.parametrize("notify", UNAUTHENTICATED)
def test_error_without_idr_and_auth_is_reported_as_received(notify):
    a, b, w, _ = run(Bugs(auth_error_without_id=notify))
    failed = of(a.drain_events(), ExchangeFailed)
    assert [(e.exchange, e.notify, e.received) for e in failed] == [("IKE_AUTH", notify, True)]
    assert "IDr" in failed[0].message and "AUTH" in failed[0].message


@pytest.mark.rfc(7296, "2.21.2", "MUST")
@pytest.mark.parametrize("notify", UNAUTHENTICATED)
def test_error_without_idr_and_auth_is_not_answered(notify):
    a, b, w, clock = run(Bugs(auth_error_without_id=notify))
    from_a = [d for d in w.log if d.src == A]
    assert len(from_a) == 2 and w.log[-1].src == B  # IKE_SA_INIT and IKE_AUTH requests; the last word is sun's
    assert quiet_forever(a, clock)


@pytest.mark.rfc(7296, "2.21.2", "MUST")
@pytest.mark.parametrize("notify", UNAUTHENTICATED)
def test_error_without_idr_and_auth_drops_the_ike_sa(notify):
    a, b, w, _ = run(Bugs(auth_error_without_id=notify))
    assert not a.established() and not a.sas
    ev = a.drain_events()
    assert not of(ev, IkeSaEstablished) and not of(ev, ChildSaEstablished)
    assert notify in of(ev, IkeSaDeleted)[0].reason
    assert not b.sas and not b.established()


@pytest.mark.rfc(7296, "2.21.2", "MUST")
@pytest.mark.parametrize("notify,allowed", [("INVALID_SYNTAX", True), ("TEMPORARY_FAILURE", False)])
def test_other_errors_without_idr_and_auth(notify, allowed):
    a, b, w, clock = run(Bugs(auth_error_without_id=notify))
    (e,) = of(a.drain_events(), ExchangeFailed)
    assert (e.notify, e.received) == (notify, True) and ("RFC 7296" in e.message) != allowed
    assert not a.sas and len(w.log) == 4 and quiet_forever(a, clock)


def test_keys_of_the_dropped_ike_sa_stay_exportable():
    clock = FakeClock()
    a = IkeEndpoint(cfg("moon"), A, clock, seeded_rng(1))
    b = IkeEndpoint(cfg("sun", bugs=Bugs(auth_error_without_id="NO_PROPOSAL_CHOSEN")), B, clock, seeded_rng(1001))
    snapshots = []

    def snapshot_before_auth_response(d: Datagram):
        if d.src == B and d.data[18] == IKE_AUTH:
            snapshots.append(a.export()["ike_sas"])
        return d
    out = a.initiate(B)
    (sa,) = a.sas.values()
    Wire(a, b, snapshot_before_auth_response).run(out)
    assert not a.sas and snapshots == [[sa.ike_keys.to_json()]]  # exported while alive, key material kept after


@pytest.mark.rfc(7296, "1.2", "MUST")
@pytest.mark.parametrize("notify", ["NO_PROPOSAL_CHOSEN", "TS_UNACCEPTABLE", "SINGLE_PAIR_REQUIRED",
                                    "INTERNAL_ADDRESS_FAILURE", "FAILED_CP_REQUIRED", "INVALID_SELECTORS"])
def test_child_error_with_idr_and_auth_keeps_ike_sa(notify):
    a, b, w, clock = run(Bugs(refuse_child=notify))
    (sa_a,), (sa_b,) = a.established(), b.established()
    assert (sa_a.spi_i, sa_a.spi_r) == (sa_b.spi_i, sa_b.spi_r) and not sa_a.children and not sa_b.children
    ev = a.drain_events()
    assert len(of(ev, IkeSaEstablished)) == 1 and not of(ev, ChildSaEstablished) and not of(ev, IkeSaDeleted)
    assert [(e.exchange, e.notify, e.received) for e in of(ev, ExchangeFailed)] == [("IKE_AUTH", notify, True)]
    assert [(e.notify, e.received) for e in of(b.drain_events(), ExchangeFailed)] == [(notify, False)]
    assert len(w.log) == 4 and quiet_forever(a, clock)


@pytest.mark.rfc(7296, "2.21.2", "MUST")
def test_authentication_failed_alone_is_reported_as_received():
    a, b, w, clock = run(Bugs(auth_error_without_id="AUTHENTICATION_FAILED"))
    failed = of(a.drain_events(), ExchangeFailed)
    assert [(e.exchange, e.notify, e.received) for e in failed] == [("IKE_AUTH", "AUTHENTICATION_FAILED", True)]
    assert not a.sas and len(w.log) == 4 and quiet_forever(a, clock)
