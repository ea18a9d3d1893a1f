"""Rekeys that meet (RFC 7296 s2.8.1, s2.8.2, s2.25), one row of collisions.json a case, and a rekey of a Child SA
the peer does not have.

The peer rekeys the Child SA or the IKE SA; the built-in end, before it answers, sends its own rekey of the same SA
(harness.ike.collide), with its nonce chosen so that its exchange or the peer's holds the lowest of the four nonces.
Under the built-in end's 50 ms echo stream (nothing lost) both ends should settle on the SA of the exchange without
the lowest nonce: one IKE SA and one Child SA each, agreeing SPIs, the old and the redundant SA gone from both
daemons and the peer's kernel sending only on the survivor; after an IKE SA collision the Child SA stands on the
surviving IKE SA with its SPIs. s2.8.1 and s2.8.2 say SHOULD: a redundant SA left (within SETTLE seconds of both
rekeys) or the other survivor is NON-STRICT; ends that share no Child SA afterwards are FAILED (s2.8).
A REKEY_SA naming an SPI the peer never had SHOULD be answered CHILD_SA_NOT_FOUND (s2.25; NON-STRICT otherwise),
and the IKE SA and its Child SA must stand and carry traffic afterwards.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from harness.cases.pair import SETTLE
from harness.cases.table import row_params
from harness.errors import NoAnswer, PeerFault
from harness.ike import collide
from harness.ike.events import ChildSaEstablished, ExchangeFailed, IkeSaEstablished
from harness.report.checks import should

pytestmark = [pytest.mark.lab, pytest.mark.root]

TABLE = Path(__file__).with_name("collisions.json")
MISSING_SPI = bytes.fromhex("0badc0de")  # a Child SA SPI no end of a case allocates (collide.rekey_missing refuses ours)


def _rows() -> list[Any]:
    return row_params(TABLE, {"lowest", "survivor", "what"})


def _cross(how: str):  # noqa: ANN202
    """A request for the built-in end's loop: arm its endpoint (this case's only) to cross the peer's next rekey."""
    def arm(ep) -> list:  # noqa: ANN001
        ep.config = replace(ep.config, bugs=replace(ep.config.bugs, collide_rekeys=how))
        return []
    return arm


@pytest.mark.ends("builtin>peer")
@pytest.mark.parametrize("row", _rows())
def test_simultaneous_rekeys(pair, row, record_property, request):
    pair.establish(pair.connection())
    what, mark = row["what"], len(pair.events(pair.builtin_end))
    before = {e.name: pair.held(e) for e in pair.ends}
    pair.builtin.request(_cross(row["lowest"]))
    with pair.stream():
        pair.peer.adapter.rekey(pair.conn.name, what)
        made = ChildSaEstablished if what == "child" else IkeSaEstablished
        pair.wait(lambda: sum(isinstance(e, made) for e in pair.events(pair.builtin_end)[mark:]) >= 2,
                  "both rekeys made their SA at the built-in end (the requests crossed)")
        try:
            pair.wait(lambda: pair.one_sa_each(what, before), f"one {what} SA left on each end, the same, not the old",
                      timeout=SETTLE)
        except NoAnswer:
            _unsettled(pair, what, request)
        else:
            _survivor(pair, row, record_property, request)
    pair.terminate()  # the stream was the traffic: every request answered, the last through the new SAs


def _unsettled(pair, what: str, request) -> None:  # noqa: ANN001
    """The ends did not settle on one SA each: FAILED if they share no Child SA (the rekeys broke it, RFC 7296 s2.8),
    else NON-STRICT (the redundant SA was not deleted: s2.8.1, s2.8.2 SHOULD)."""
    held = {e.name: pair.held(e) for e in pair.ends}
    a, b = ({c for _, children in held[e.name] for c in children} for e in pair.ends)
    shared = {c for c in a if c[::-1] in b}
    if not shared:
        raise PeerFault(f"after crossed {what} SA rekeys the ends share no Child SA: {held} ((IKE SA), Child SAs (in, out) "
                        f"per end); the built-in end's log and {pair.peer.name}'s show which exchange went unfinished",
                        "RFC 7296 s2.8 MUST")
    should(request, False, pair.requirement, f"after crossed {what} SA rekeys the ends hold {held} ((IKE SA), Child SAs "
           f"(in, out) per end): the redundant SA was not deleted")


def _survivor(pair, row, record_property, request) -> None:  # noqa: ANN001
    """The surviving SA is the one the row's exchange made (NON-STRICT otherwise: s2.8.1 and s2.8.2 are SHOULDs), and
    the peer's kernel sends on the one Child SA both ends hold."""
    what = row["what"]
    ours = pair.builtin.read(lambda ep: [c.we_initiated for s in ep.established() for c in s.children.values()
                                         if not c.rekeyed] if what == "child" else
                             [s.original_initiator for s in ep.established()])
    record_property("survivor_made_by_builtin", ours)
    made = "the built-in end's" if ours == [True] else f"{pair.peer.name}'s"
    lowest = "the built-in end's" if row["lowest"] == "ours-lowest" else f"{pair.peer.name}'s"
    should(request, ours == [row["survivor"] == "builtin"], pair.requirement,
           f"after crossed {what} SA rekeys the surviving {what} SA is {made} exchange's; {lowest} exchange held the "
           f"lowest nonce and made the redundant SA")
    mine = pair.child(pair.peer)
    own = pair.address(pair.peer)
    pair.wait(lambda: {s.spi for s in pair.peer.adapter.xfrm_state() if s.src == own and s.proto == "esp"}
              == {mine.spi_out}, f"{pair.peer.name}'s kernel sends on the surviving Child SA 0x{mine.spi_out:08x} alone")


@pytest.mark.ends("builtin>peer")
@pytest.mark.rfc(7296, "2.25", "SHOULD")
def test_a_rekey_of_a_child_sa_the_peer_does_not_have(pair, request):
    pair.establish(pair.connection())
    mark = len(pair.events(pair.builtin_end))
    pair.builtin.request(lambda ep: collide.rekey_missing(ep, ep.established()[0], MISSING_SPI))
    answer = pair.wait(lambda: [e for e in pair.events(pair.builtin_end)[mark:]
                                if isinstance(e, (ExchangeFailed, ChildSaEstablished))],
                       f"{pair.peer.name}'s answer to a rekey of a Child SA it does not have")[0]
    if isinstance(answer, ChildSaEstablished):
        raise PeerFault(f"{pair.peer.name} made a Child SA to replace 0x{MISSING_SPI.hex()}, a Child SA it does not have",
                        pair.requirement)
    request.node.user_properties.append(("answer", answer.notify))
    should(request, answer.notify == "CHILD_SA_NOT_FOUND", "RFC 7296 s2.25 SHOULD",
           f"{pair.peer.name} answered a rekey of a Child SA it does not have with {answer.notify}, not CHILD_SA_NOT_FOUND")
    pair.traffic(count=2)  # the IKE SA and its Child SA stand
    pair.terminate()
