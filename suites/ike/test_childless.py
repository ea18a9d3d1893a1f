"""Childless IKE SAs (RFC 6023) against every peer: an IKE SA made by an IKE_AUTH without SA, TSi and TSr has no
Child SA at either end (nor in a peer's kernel) until one end makes it with CREATE_CHILD_SA (RFC 7296 s1.3.1), which
then carries traffic; a childless IKE_AUTH sent to a responder that did not announce CHILDLESS_IKEV2_SUPPORTED is
answered and makes no Child SA; a responder that accepts childless IKE SAs only (strongSwan's childless = force)
makes no Child SA from an IKE_AUTH that asks for one.

Libreswan 4.10 and 5.2 announce support and accept a childless IKE_AUTH as responders, but have no configuration
that makes them initiate one or refuse one (their adapter says so: UNIMPLEMENTED for those cases).
"""
from __future__ import annotations

import pytest

from harness.errors import NoAnswer, PeerFault, Refused
from harness.ike.events import ChildlessIkeSa

IKE_SA_ENDING = ("INVALID_SYNTAX", "UNSUPPORTED_CRITICAL_PAYLOAD", "AUTHENTICATION_FAILED")  # RFC 7296 s2.21.2

pytestmark = [pytest.mark.lab, pytest.mark.root]


@pytest.mark.rfc(6023, "3", "MUST")
@pytest.mark.parametrize("by", ["initiator", "responder"])
def test_a_childless_ike_sa_gets_its_child_sa_by_create_child_sa(pair, by, record_property):
    """RFC 6023 s3: after an IKE_AUTH without SA, TSi and TSr the responder creates no Child SA; the Child SA comes
    later with CREATE_CHILD_SA from either end (RFC 7296 s1.3.1) and carries traffic."""
    pair.establish_childless(pair.connection())
    for end in pair.ends:
        if end.builtin:  # the built-in end read both IKE_AUTH messages: neither carried SA, TSi or TSr
            seen = [e for e in pair.events(end) if isinstance(e, ChildlessIkeSa)]
            if not seen:
                raise PeerFault("the built-in end saw no childless IKE_AUTH exchange", pair.requirement)
            record_property("peer_announced_childless", seen[-1].peer_announced)
    pair.create_child(by=by)
    pair.traffic(count=3)
    pair.terminate()


@pytest.mark.ends("builtin>peer")
@pytest.mark.rfc(6023, "3", "MUST")
def test_a_childless_ike_auth_to_a_responder_that_did_not_announce_it(pair, record_property):
    """A responder configured against childless IKE SAs (strongSwan childless = never) announces no
    CHILDLESS_IKEV2_SUPPORTED; the built-in initiator sends it a childless IKE_AUTH anyway (Bugs.childless_unannounced).
    The responder must answer it and create no Child SA; after INVALID_SYNTAX (strongSwan's answer) no IKE SA may be
    left at either end (RFC 7296 s2.21.2). What it answered is recorded."""
    conn = pair.connection()
    pair.builtin.bugs.childless_unannounced = True
    try:
        pair.load(conn, pair.mirror(conn, childless="never"))
        answer = "accepted: IKE SA without a Child SA"
        try:
            pair.builtin.initiate_ike(conn.name)
        except Refused as e:
            answer = e.notify or str(e)
        except NoAnswer as e:
            raise PeerFault(f"no answer to a childless IKE_AUTH: {e}", pair.requirement) from None
        finally:
            pair.snapshot()
        record_property("peer_answer", answer)
        announced = [e.peer_announced for e in pair.events(pair.initiator) if isinstance(e, ChildlessIkeSa)]
        if any(announced):
            raise PeerFault("the responder configured with childless = never announced CHILDLESS_IKEV2_SUPPORTED",
                            pair.requirement)
        _after(pair, answer)
    finally:
        pair.builtin.bugs.childless_unannounced = False


@pytest.mark.ends("builtin>peer")
@pytest.mark.rfc(6023, "3", "MAY")
def test_a_responder_forcing_childless_makes_no_child_sa_in_ike_auth(pair, record_property):
    """strongSwan's childless = force: 'only childless initiation is accepted in either role' (swanctl.conf); an
    IKE_AUTH that asks for a Child SA must not make one at the forcing responder. Its answer is recorded."""
    conn = pair.connection()
    try:
        pair.establish(conn, pair.mirror(conn, childless="force"))
    except (Refused, PeerFault) as e:
        answer = getattr(e, "notify", None) or str(e)
    else:
        raise PeerFault("the responder forcing childless IKE SAs made a Child SA in IKE_AUTH", pair.requirement)
    record_property("peer_answer", answer)
    _after(pair, answer)


def _after(pair, answer: str) -> None:
    """No Child SA at either end after the responder's answer; after INVALID_SYNTAX, UNSUPPORTED_CRITICAL_PAYLOAD or
    AUTHENTICATION_FAILED in IKE_AUTH no IKE SA either (RFC 7296 s2.21.2); after another error the IKE SA may stand."""
    pair.after_refusal(f"the IKE_AUTH answer {answer}", child_only=answer not in IKE_SA_ENDING)
