"""A rekey that meets a Delete of the same Child SA, and a rekey of a Child SA already deleted (RFC 7296 s2.25.1), one
row of deletes.json a case.

A second Child SA is made first, so the IKE SA keeps one. Then the case's Child SA is deleted by the row's end and
the built-in end asks to rekey it: crossing the peer's Delete (sent before it answers it), or after the Delete
exchange is over. The peer SHOULD answer a rekey of an SA it is closing with TEMPORARY_FAILURE and one of an SA it
no longer has with CHILD_SA_NOT_FOUND (NON-STRICT otherwise). A Child SA the peer makes to replace one it no longer
has is FAILED; afterwards the deleted SA is gone at both ends and the peer's kernel, and the other Child SA carries
traffic.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from harness.cases.pair import CASE, WAIT
from harness.cases.table import row_params
from harness.errors import ConfigError, NoAnswer, PeerFault
from harness.ike import collide
from harness.ike.events import ChildSaDeleted, ChildSaEstablished, ExchangeFailed
from harness.report.checks import should

pytestmark = [pytest.mark.lab, pytest.mark.root]

TABLE = Path(__file__).with_name("deletes.json")


def _rows() -> list[Any]:
    out = row_params(TABLE, {"deleted_by", "rekey", "answer"})
    for p in out:
        r = p.values[0]
        if r["deleted_by"] not in ("builtin", "peer") or r["rekey"] not in ("crossing", "after") \
                or r["rekey"] == "crossing" and r["deleted_by"] != "peer":
            raise ConfigError(f"{TABLE}: row {r['id']}: deleted_by {r['deleted_by']!r} (builtin, peer), rekey "
                              f"{r['rekey']!r} (after, or crossing a Delete by the peer)")
    return out


def _arm(ep) -> list:  # noqa: ANN001
    """A request for the built-in end's loop: cross the peer's next Delete of a Child SA with our rekey of it."""
    ep.config = replace(ep.config, bugs=replace(ep.config.bugs, rekey_on_delete=True))
    return []


@pytest.mark.parametrize("row", _rows())
def test_a_rekey_of_a_child_sa_being_or_already_deleted(pair, row, request):
    pair.establish(pair.connection())
    end, peer = pair.builtin, pair.peer
    mark = len(end.events)
    end.request(lambda ep: ep.create_child(ep.established()[0]))  # a second Child SA, so the IKE SA keeps one
    second = end.wait_event(lambda e: isinstance(e, ChildSaEstablished), mark, WAIT, "CREATE_CHILD_SA for a second Child SA")
    pair.wait(lambda: sum(len(s.children) for s in pair.ike_sas(peer)) == 2, f"{peer.name} holds both Child SAs")
    first = next(c for s in pair.ike_sas(peer) for c in s.children if c.spi_out != second.inbound.spi)
    ours = first.spi_out.to_bytes(4, "big")  # the built-in end's inbound SPI of the Child SA to delete
    model = end.read(lambda ep: ep.established()[0].children[ours])
    if row["rekey"] == "crossing":
        end.request(_arm)
    mark = len(end.events)
    if row["deleted_by"] == "peer":
        peer.adapter.delete_child(CASE, first.spi_in)
    else:
        end.delete_child(CASE, first.spi_out)
    end.wait_event(lambda e: isinstance(e, ChildSaDeleted) and e.spi_out == first.spi_in, mark, WAIT,
                   f"the built-in end removed the Child SA 0x{first.spi_out:08x} after the Delete")
    if row["rekey"] == "after":
        end.request(lambda ep: collide.rekey_missing(ep, ep.established()[0], ours, model))
    answer = pair.wait(lambda: [e for e in end.events[mark:] if isinstance(e, ExchangeFailed) and e.received
                                and e.exchange == "CREATE_CHILD_SA" or isinstance(e, ChildSaEstablished)],
                       f"{peer.name}'s answer to the rekey of the Child SA 0x{first.spi_in:08x} it "
                       f"{'is deleting' if row['rekey'] == 'crossing' else 'no longer has'}")[0]
    request.node.user_properties.append(("answer", getattr(answer, "notify", "a new Child SA")))
    if isinstance(answer, ChildSaEstablished):
        made = f"{peer.name} made a Child SA (0x{answer.inbound.spi:08x}) to replace 0x{first.spi_in:08x}, which it "
        if row["rekey"] == "after":
            raise PeerFault(made + "had deleted", pair.requirement)
        should(request, False, pair.requirement, made + f"was deleting (RFC 7296 s2.25.1: {row['answer']})")
    else:
        should(request, answer.notify == row["answer"], pair.requirement,
               f"{peer.name} answered a rekey of a Child SA it {'was deleting' if row['rekey'] == 'crossing' else 'had deleted'} "
               f"with {answer.notify}, not {row['answer']}")
    _gone(pair, first, row["deleted_by"])
    if isinstance(answer, ExchangeFailed):
        pair.traffic(count=1)  # the other Child SA carries traffic
    pair.terminate()


def _gone(pair, first, deleted_by: str) -> None:  # noqa: ANN001
    """Wait until the deleted Child SA is gone at both ends and from the peer's kernel; PeerFault naming who holds it:
    the recipient of a Delete MUST close the SAs (RFC 7296 s1.4.1), its sender MUST retransmit it until answered
    (s2.1), and the built-in end answered it (its log)."""
    peer, gone, left = pair.peer, {first.spi_in, first.spi_out}, {}

    def none_left() -> bool:
        left.clear()
        for e in pair.ends:
            held = [f"Child SA 0x{c.spi_in:08x} ({c.state})" for s in pair.ike_sas(e) for c in s.children
                    if gone & {c.spi_in, c.spi_out} and "DELETED" not in c.state]
            held += [f"kernel {s.proto} SA 0x{s.spi:08x}" for s in (e.adapter.xfrm_state() if not e.builtin else [])
                     if s.spi in gone]
            if held:
                left[e.name] = held
        return not left

    try:
        pair.wait(none_left, f"the Child SA 0x{first.spi_in:08x} gone at both ends and from {peer.name}'s kernel")
    except NoAnswer as e:
        why = ("its own Delete was answered by the built-in end and never retransmitted or acted on (RFC 7296 s2.1: "
               "a request is retransmitted until answered)" if deleted_by == "peer" else
               "the built-in end's Delete was answered, yet the SA stays (RFC 7296 s1.4.1: the recipient MUST close it)")
        raise PeerFault(f"after the rekey met the Delete, still held: {left}; {why}; {e}",
                        "RFC 7296 s2.1 MUST" if deleted_by == "peer" else "RFC 7296 s1.4.1 MUST") from None
