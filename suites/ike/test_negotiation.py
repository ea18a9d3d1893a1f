"""How the ends choose and refuse (RFC 7296 s2.7, s3.3.6), and the KE group round trip (s1.2, s1.3, s2.7).

Choices and refusals are rows of negotiation.json; the INVALID_KE_PAYLOAD cases need the built-in end's record
of the round trip (a KeRetry event when it initiates, the INVALID_KE_PAYLOAD it sent when it responds), so they
are written out here.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.cases.pair import WAIT
from harness.cases.table import CaseRow, Expect, Requirement, table_params
from harness.crypto import TransformType
from harness.errors import PeerFault, Refused
from harness.ike.events import ChildSaEstablished, ExchangeFailed, KeRetry
from harness.ike.proposals import Proposal, Protocol, Transform, parse_proposal

pytestmark = [pytest.mark.lab, pytest.mark.root]
TABLE = Path(__file__).with_name("negotiation.json")
IDENTITIES = Path(__file__).with_name("identities.json")
ECP256, MODP2048 = 19, 14


@pytest.mark.ends("builtin>peer", "peer>builtin")
@pytest.mark.parametrize("row", table_params(TABLE) + table_params(IDENTITIES))
def test_negotiation(pair, row):
    pair.expect(row)
    if row.expect.outcome == "established":
        pair.traffic(count=1)
        pair.terminate()


def _round_trip(pair, exchange: str, group: int, mark: int) -> None:
    """The built-in end saw the INVALID_KE_PAYLOAD round trip asking for group (in its events from mark on: the
    pooled end keeps earlier cases' events); PeerFault naming what it saw."""
    events = pair.builtin.events[mark:]
    if pair.initiator.builtin:
        asked = [e.group for e in events if isinstance(e, KeRetry) and e.exchange == exchange]
        if asked != [group]:
            raise PeerFault(f"{pair.responder.name} did not answer the KE for another group with INVALID_KE_PAYLOAD "
                            f"asking for {group} in {exchange} (groups asked: {asked})", pair.requirement)
    else:
        sent = [e for e in events if isinstance(e, ExchangeFailed) and e.notify == "INVALID_KE_PAYLOAD" and not e.received]
        if len(sent) != 1:
            raise PeerFault(f"{pair.initiator.name} sent {exchange} {len(sent) + 1} time(s); expected one "
                            f"INVALID_KE_PAYLOAD round trip", pair.requirement)


@pytest.mark.ends("builtin>peer", "peer>builtin")
@pytest.mark.rfc(7296, "1.2", "MUST")
def test_invalid_ke_payload_and_the_retry_in_ike_sa_init(pair):
    conn = pair.connection(ike_proposals=["aes128-sha256-prfsha256-ecp256-modp2048"])  # KE payload for ecp256
    mark = len(pair.builtin.events)
    pair.establish(conn, pair.mirror(conn, ike_proposals=["aes128-sha256-prfsha256-modp2048"]))
    _round_trip(pair, "IKE_SA_INIT", MODP2048, mark)
    pair.traffic(count=1)
    pair.terminate()


@pytest.mark.ends("builtin>peer")
@pytest.mark.rfc(7296, "1.3", "MUST")
def test_invalid_ke_payload_for_a_create_child_sa_group_the_peer_accepts_but_does_not_prefer(pair):
    """RFC 7296 s1.3: a CREATE_CHILD_SA whose KE is for an acceptable group the responder did not pick is answered
    INVALID_KE_PAYLOAD naming its group (not NO_PROPOSAL_CHOSEN); the initiator's retry makes the Child SA."""
    conn = pair.connection(child_proposals=["aes128gcm16-ecp256"])
    pair.establish(conn, pair.mirror(conn, child_proposals=["aes128gcm16-ecp256"]))
    end = pair.builtin
    mark = len(end.events)
    offer = [parse_proposal("aes128gcm16-modp2048-ecp256", "esp")]  # KE payload for the first group, modp2048
    end.request(lambda ep: ep.create_child(ep.established()[0], proposals=offer))
    try:
        end.wait_event(lambda e: isinstance(e, ChildSaEstablished), mark, WAIT, "CREATE_CHILD_SA after INVALID_KE_PAYLOAD")
    except Refused as e:
        raise PeerFault(f"{pair.responder.name} answered a CREATE_CHILD_SA whose KE is for an offered group it did not "
                        f"pick with {e.notify}, not INVALID_KE_PAYLOAD({ECP256})", pair.requirement, e.notify) from None
    _round_trip(pair, "CREATE_CHILD_SA", ECP256, mark)
    pair.terminate()


@pytest.mark.ends("builtin>peer")
@pytest.mark.rfc(7296, "3.3.6", "MUST")
def test_a_non_aead_cipher_without_integrity_is_no_proposal_chosen(pair):
    pair.builtin.config_overrides["ike_proposals"] = [Proposal(Protocol.IKE, (
        Transform(TransformType.ENCR, 12, 128), Transform(TransformType.PRF, 5), Transform(TransformType.KE, ECP256)))]
    try:
        pair.expect(_refusal("NO_PROPOSAL_CHOSEN", "3.3.6"))
    finally:
        pair.builtin.config_overrides.clear()


@pytest.mark.ends("builtin>peer", "peer>builtin")
@pytest.mark.rfc(7296, "2.15", "MUST")
def test_a_wrong_psk_is_authentication_failed_and_nothing_is_left(pair):
    pair.expect(_refusal("AUTHENTICATION_FAILED", "2.15", auth={"psk": "a deliberately different PSK 0123456789"}))


def _refusal(notify: str, section: str, **responder: object) -> CaseRow:
    """A row expecting a refusal with notify (RFC 7296 section, MUST), the responder's fields replaced."""
    return CaseRow(f"refused-{notify.lower()}", Requirement(7296, section, "MUST"), {}, Expect("refused", notify), None,
                   __file__, dict(responder))
