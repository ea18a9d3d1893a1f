"""INFORMATIONAL exchanges against every peer (RFC 7296 s1.4): a Child SA deleted by the built-in end is gone at
the peer, in its IKE daemon and in its kernel, while the IKE SA and the other Child SA stand; an IKE SA deleted by
either end takes its Child SAs with it at both ends, kernels included.
"""
from __future__ import annotations

import pytest

from harness.cases.pair import WAIT
from harness.ike.events import ChildSaDeleted, ChildSaEstablished

pytestmark = [pytest.mark.lab, pytest.mark.root]


@pytest.mark.ends("builtin>peer", "peer>builtin")
@pytest.mark.rfc(7296, "1.4.1", "MUST")
def test_a_child_sa_deleted_by_the_built_in_end_is_gone_at_the_peer(pair):
    pair.establish(pair.connection(child_proposals=["aes128gcm16"]))
    end, peer = pair.builtin, next(e for e in pair.ends if not e.builtin)
    mark = len(end.events)
    end.request(lambda ep: ep.create_child(ep.established()[0]))  # a second Child SA, so the IKE SA keeps one
    second = end.wait_event(lambda e: isinstance(e, ChildSaEstablished), mark, WAIT, "CREATE_CHILD_SA for a second Child SA")
    pair.wait(lambda: sum(len(s.children) for s in pair.ike_sas(peer)) == 2, f"{peer.name} holds both Child SAs")
    gone: set[int] = set()

    def delete_the_first(ep):
        sa = ep.established()[0]
        first = next(c for c in sa.children.values() if int.from_bytes(c.spi_in, "big") != second.inbound.spi)
        gone.update(int.from_bytes(x, "big") for x in (first.spi_in, first.spi_out))
        return ep.delete_child(sa, first.spi_in)

    mark = len(end.events)
    end.request(delete_the_first)
    end.wait_event(lambda e: isinstance(e, ChildSaDeleted) and e.spi_in in gone, mark, WAIT,
                   "the INFORMATIONAL Delete of the first Child SA answered")

    def deleted_at_the_peer() -> bool:
        children = [c for s in pair.ike_sas(peer) for c in s.children]
        kernel = {s.spi for s in peer.adapter.xfrm_state()}
        return len(children) == 1 and not gone & {children[0].spi_in, children[0].spi_out} and not gone & kernel

    pair.wait(deleted_at_the_peer, f"{peer.name} removed the deleted Child SA (SPIs {sorted(map(hex, gone))}) from its "
              "IKE daemon and its kernel, and kept the IKE SA and the other Child SA")
    pair.terminate()


@pytest.mark.ends("builtin>peer", "peer>builtin")
@pytest.mark.rfc(7296, "1.4.1", "MUST")
@pytest.mark.parametrize("by", ["initiator", "responder"])
def test_the_ike_sa_deleted_by_either_end_takes_its_child_sas_at_both(pair, by):
    pair.establish(pair.connection(child_proposals=["aes128gcm16"]))
    peer = next(e for e in pair.ends if not e.builtin)
    spis = {x for s in pair.ike_sas(peer) for c in s.children for x in (c.spi_in, c.spi_out)}
    pair.terminate(by)
    pair.wait(lambda: not spis & {s.spi for s in peer.adapter.xfrm_state()},
              f"{peer.name}'s kernel dropped the Child SA (SPIs {sorted(map(hex, spis))}) with the IKE SA")
