"""INFORMATIONAL exchanges against every peer (RFC 7296 s1.4, s2.4): a Child SA deleted by either end is gone at
both, the peer's kernel included, while the IKE SA and the other Child SA stand; an IKE SA deleted by either end
takes its Child SAs with it at both ends; liveness checks from either end are answered and change nothing; after
a restart of the built-in end, its new IKE SA with N(INITIAL_CONTACT) replaces the one it lost.
"""
from __future__ import annotations

import pytest

from harness.cases.pair import CASE, WAIT
from harness.errors import PeerFault
from harness.ike.events import ChildSaDeleted, ChildSaEstablished, Informational
from harness.report.checks import should

pytestmark = [pytest.mark.lab, pytest.mark.root]


@pytest.mark.ends("builtin>peer", "peer>builtin")
@pytest.mark.rfc(7296, "1.4.1", "MUST")
@pytest.mark.parametrize("by", ["builtin", "peer"])
def test_a_child_sa_deleted_by_either_end_is_gone_at_both(pair, by):
    pair.establish(pair.connection(child_proposals=["aes128gcm16"]))
    end, peer = pair.builtin, _peer(pair)
    mark = len(end.events)
    end.request(lambda ep: ep.create_child(ep.established()[0]))  # a second Child SA, so the IKE SA keeps one
    second = end.wait_event(lambda e: isinstance(e, ChildSaEstablished), mark, WAIT, "CREATE_CHILD_SA for a second Child SA")
    pair.wait(lambda: sum(len(s.children) for s in pair.ike_sas(peer)) == 2, f"{peer.name} holds both Child SAs")
    first = next(c for s in pair.ike_sas(peer) for c in s.children if c.spi_out != second.inbound.spi)
    gone = {first.spi_in, first.spi_out}
    mark = len(end.events)
    if by == "peer":
        peer.adapter.delete_child(CASE, first.spi_in)
    else:
        end.delete_child(CASE, first.spi_out)
    end.wait_event(lambda e: isinstance(e, ChildSaDeleted) and e.spi_out == first.spi_in, mark, WAIT,
                   f"the built-in end removed the Child SA 0x{first.spi_out:08x} after the Delete")

    def deleted_at_both() -> bool:
        kept = {e.name: [c for s in pair.ike_sas(e) for c in s.children] for e in pair.ends}
        kernel = {s.spi for s in peer.adapter.xfrm_state()}
        return all(len(c) == 1 and not gone & {c[0].spi_in, c[0].spi_out} for c in kept.values()) and not gone & kernel

    pair.wait(deleted_at_both, f"both ends removed the Child SA {by} deleted (SPIs {sorted(map(hex, gone))}), "
              f"{peer.name}'s kernel included, and kept the IKE SA and the other Child SA")
    pair.traffic(count=1)  # the Child SA left still carries traffic
    pair.terminate()


@pytest.mark.ends("builtin>peer", "peer>builtin")
@pytest.mark.rfc(7296, "1.4", "MUST")
def test_the_peer_answers_a_liveness_check(pair):
    """RFC 7296 s1.4: the recipient of an INFORMATIONAL request MUST respond; an empty one is the liveness check
    of s2.4, and answering it leaves the IKE SA as it was."""
    pair.establish(pair.connection())
    end, peer = pair.builtin, _peer(pair)
    ike = {(s.spi_i, s.spi_r) for s in pair.ike_sas(peer)}
    mark = len(end.events)
    end.request(lambda ep: ep.liveness(ep.established()[0]))
    answer = end.wait_event(lambda e: isinstance(e, Informational) and e.asked_by_us, mark, WAIT,
                            f"{peer.name}'s answer to an empty INFORMATIONAL request")
    if {(s.spi_i, s.spi_r) for s in pair.ike_sas(peer)} != ike:
        raise PeerFault(f"{peer.name} changed its IKE SAs on a liveness check (answer carried {answer.payloads})",
                        pair.requirement)
    pair.traffic(count=1)
    pair.terminate()


@pytest.mark.ends("builtin>peer", "peer>builtin")
@pytest.mark.rfc(7296, "2.4", "SHOULD")
def test_the_peer_checks_liveness_and_keeps_an_answered_ike_sa(pair):
    """RFC 7296 s2.4: with nothing received for its DPD delay the peer sends an empty INFORMATIONAL request; the
    built-in end answers each one, so the peer keeps the IKE SA and its Child SA through two checks."""
    pair.establish(pair.connection(dpd={"delay": 2, "action": "clear"}))
    end, peer = pair.builtin, _peer(pair)
    ike = {(s.spi_i, s.spi_r) for s in pair.ike_sas(peer)}
    mark = len(end.events)

    def checks() -> list[Informational]:
        return [e for e in end.events[mark:] if isinstance(e, Informational) and not e.asked_by_us and not e.payloads]

    pair.wait(lambda: len(checks()) >= 2, f"two liveness checks (empty INFORMATIONAL requests) from {peer.name} "
              "with a DPD delay of 2 s")
    if {(s.spi_i, s.spi_r) for s in pair.ike_sas(peer)} != ike:
        raise PeerFault(f"{peer.name} did not keep its IKE SA through two answered liveness checks", pair.requirement)
    pair.traffic(count=1)
    pair.terminate()


def _ike(sa):
    """An IKE SA's identity as a peer reports it: SPIs (strongSwan) or state number (Libreswan shows no SPIs)."""
    return sa.spi_i, sa.spi_r, sa.serial


def _peer(pair):
    """The reference peer of a builtin>peer or peer>builtin pair."""
    return next(e for e in pair.ends if not e.builtin)


@pytest.mark.ends("builtin>peer", "peer>builtin")
@pytest.mark.rfc(7296, "1.4.1", "MUST")
@pytest.mark.parametrize("by", ["initiator", "responder"])
def test_the_ike_sa_deleted_by_either_end_takes_its_child_sas_at_both(pair, by):
    pair.establish(pair.connection(child_proposals=["aes128gcm16"]))
    peer = _peer(pair)
    spis = {x for s in pair.ike_sas(peer) for c in s.children for x in (c.spi_in, c.spi_out)}
    pair.terminate(by)
    pair.wait(lambda: not spis & {s.spi for s in peer.adapter.xfrm_state()},
              f"{peer.name}'s kernel dropped the Child SA (SPIs {sorted(map(hex, spis))}) with the IKE SA")


@pytest.mark.ends("builtin>peer")
@pytest.mark.rfc(7296, "2.4", "MAY")
def test_initial_contact_after_a_restart_replaces_the_lost_ike_sa(pair, request):
    """The built-in end loses its IKE SA without a Delete (a restart) and sets up a new one with N(INITIAL_CONTACT):
    the peer MAY then delete the other IKE SAs of that identity at once (RFC 7296 s2.4), and with them their Child
    SAs and kernel states. The new IKE SA must work either way; an old one kept is recorded as NON-STRICT."""
    conn = pair.connection(child_proposals=["aes128gcm16"])
    pair.establish(conn)
    peer = _peer(pair)
    old = {_ike(s) for s in pair.ike_sas(peer)}
    old_spis = {x for s in pair.ike_sas(peer) for c in s.children for x in (c.spi_in, c.spi_out)}
    pair.snapshot()  # the lost SAs' keys stay in the case's evidence
    pair.builtin.config_overrides["initial_contact"] = True
    try:
        pair.builtin.restart()
        pair.builtin.initiate(conn.name)
    finally:
        pair.builtin.config_overrides.clear()

    def replaced() -> bool:
        now = {_ike(s) for s in pair.ike_sas(peer)}
        return bool(now) and not now & old and not old_spis & {s.spi for s in peer.adapter.xfrm_state()}

    try:
        pair.wait(replaced, f"{peer.name} deleted the IKE SA of the restarted end and its kernel states", timeout=15)
    except PeerFault:
        pass
    kept = not should(request, replaced(), "RFC 7296 s2.4 MAY", f"{peer.name} kept the IKE SA {sorted(old)} of the "
                      "identity that sent INITIAL_CONTACT after a restart, with its Child SA and kernel states")
    pair.wait(lambda: any(_ike(s) not in old and s.children for s in pair.ike_sas(peer)),
              f"{peer.name} holds the new IKE SA with its Child SA")
    pair.snapshot()
    pair.traffic(count=1)
    if not kept:
        pair.terminate()
        return
    peer.adapter.terminate(CASE)  # both IKE SAs of the connection, the lost one included
    pair.wait(lambda: not any(pair.ike_sas(e) for e in pair.ends) and not old_spis & {s.spi for s in peer.adapter.xfrm_state()},
              f"{peer.name} deleted both IKE SAs and their kernel states")
