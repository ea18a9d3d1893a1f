"""harness.ike.collide: rekeys made to cross the peer's (RFC 7296 s2.8.1, s2.8.2) and a rekey of a Child SA the peer
never had (s2.25), between two built-in endpoints back to back."""
from __future__ import annotations

from dataclasses import replace

import pytest

from harness.ike import collide
from harness.ike.events import ChildSaDeleted, ExchangeFailed
from harness.tests.ike.test_endpoint import A, establish, mirrored, of


def _knob(ep, how: str) -> None:
    ep.config = replace(ep.config, bugs=replace(ep.config.bugs, collide_rekeys=how))


def _settle(a, b, w, clock) -> None:  # noqa: ANN001
    """Let the requests held after the answer to a crossed request go (collide.SETTLE), and their answers come."""
    clock.advance(collide.SETTLE)
    w.run(a.tick() + b.tick())


@pytest.mark.rfc(7296, "2.8.1", "MUST")
@pytest.mark.parametrize("how,survivor", [("ours-lowest", "a"), ("theirs-lowest", "b")])
def test_crossed_child_rekeys_leave_the_exchange_without_the_lowest_nonce(how, survivor):
    a, b, w, clock = establish()
    _knob(b, how)  # b crosses a's rekey with its own
    (old,) = a.established()[0].children.values()
    w.run(a.rekey_child(a.established()[0], old.spi_in))
    _settle(a, b, w, clock)
    sa_a, sa_b = mirrored(a, b)
    (new,) = sa_a.children.values()
    assert new.spi_in != old.spi_in and new.we_initiated == (survivor == "a")
    assert bytes(32) not in new.nonces  # the all-zero nonce was in the exchange that lost
    assert b.config.bugs.collide_rekeys is None and b.config.bugs.nonce_fill is None  # once
    assert not of(a.drain_events() + b.drain_events(), ExchangeFailed)


@pytest.mark.rfc(7296, "2.8.2", "MUST")
@pytest.mark.parametrize("how,survivor", [("ours-lowest", "a"), ("theirs-lowest", "b")])
def test_crossed_ike_rekeys_leave_one_ike_sa_with_the_child_sa(how, survivor):
    a, b, w, clock = establish()
    _knob(b, how)
    old = a.established()[0]
    (child,) = old.children.values()
    w.run(a.rekey_ike(old))
    _settle(a, b, w, clock)
    sa_a, sa_b = mirrored(a, b)
    assert len(a.sas) == len(b.sas) == 1 and set(sa_a.children) == {child.spi_in}
    assert sa_a.original_initiator == (survivor == "a") and bytes(32) not in (sa_a.ni, sa_a.nr)


@pytest.mark.rfc(7296, "2.25", "SHOULD")
def test_a_rekey_of_a_child_sa_the_peer_never_had_is_child_sa_not_found():
    a, b, w, _ = establish()
    sa_a = a.established()[0]
    (child,) = sa_a.children.values()
    w.run(collide.rekey_missing(a, sa_a, b"\x0b\xad\x5a\x00"))
    assert [e.notify for e in of(a.drain_events(), ExchangeFailed)] == ["CHILD_SA_NOT_FOUND"]
    assert set(mirrored(a, b)[0].children) == {child.spi_in}
    assert not of(b.drain_events(), ChildSaDeleted)


def _child_exchanges(wire) -> list[tuple[str, str]]:
    """(sender a/b, request/response) of each CREATE_CHILD_SA datagram on the wire, in order."""
    from harness.ike import view

    out = []
    for d in wire.log:
        h = view.peek(d.data)
        if h.exchange == view.CREATE_CHILD_SA:
            out.append(("a" if d.src == A else "b", "response" if h.response else "request"))
    return out


def test_the_answer_to_the_crossed_request_waits_for_the_answer_to_ours():
    a, b, w, _ = establish()
    _knob(b, "ours-lowest")
    (old,) = a.established()[0].children.values()
    w.run(a.rekey_child(a.established()[0], old.spi_in))
    # a's rekey, b's crossing rekey, a answers b's, and only then b answers a's (a peer handling datagrams on several
    # threads could otherwise take b's answer first and finish its own rekey before it saw b's request)
    assert _child_exchanges(w)[:4] == [("a", "request"), ("b", "request"), ("a", "response"), ("b", "response")]


def test_an_answer_held_for_a_crossed_request_goes_out_after_hold_without_the_answer_to_ours():
    drop = {"on": True}

    def no_answer_from_a(d):  # a's answers to CREATE_CHILD_SA requests are lost while drop is on
        from harness.ike import view

        h = view.peek(d.data)
        return None if drop["on"] and d.src == A and h.exchange == view.CREATE_CHILD_SA and h.response else d

    a, b, w, clock = establish()
    w.tamper = no_answer_from_a
    _knob(b, "ours-lowest")
    (old,) = a.established()[0].children.values()
    w.run(a.rekey_child(a.established()[0], old.spi_in))
    assert ("b", "response") not in _child_exchanges(w)  # held
    assert b.next_timer() is not None and b.next_timer() <= clock() + collide.HOLD
    drop["on"] = False
    clock.advance(collide.HOLD)
    w.run(b.tick())
    assert ("b", "response") in _child_exchanges(w)


@pytest.mark.rfc(7296, "2.25.1", "SHOULD")
def test_a_rekey_crossing_a_delete_of_the_same_child_sa_is_temporary_failure():
    a, b, w, _ = establish()
    b.config = replace(b.config, bugs=replace(b.config.bugs, rekey_on_delete=True))
    sa_a = a.established()[0]
    (child,) = sa_a.children.values()
    w.run(a.delete_child(sa_a, child.spi_in))  # b answers a's Delete only after its own rekey of the Child SA
    assert [e.notify for e in of(b.drain_events(), ExchangeFailed)] == ["TEMPORARY_FAILURE"]
    assert [e.notify for e in of(a.drain_events(), ExchangeFailed)] == ["TEMPORARY_FAILURE"]  # a sent it
    sa_a, sa_b = mirrored(a, b)
    assert not sa_a.children and not sa_b.children and b.config.bugs.rekey_on_delete is False  # once


@pytest.mark.rfc(7296, "2.25.1", "SHOULD")
def test_a_rekey_of_a_child_sa_the_peer_deleted_is_child_sa_not_found():
    a, b, w, _ = establish()
    sa_a = a.established()[0]
    (child,) = sa_a.children.values()
    w.run(a.delete_child(sa_a, child.spi_in))
    assert not sa_a.children
    w.run(collide.rekey_missing(a, sa_a, child.spi_in, model=child))
    assert [e.notify for e in of(a.drain_events(), ExchangeFailed)] == ["CHILD_SA_NOT_FOUND"]
    assert not mirrored(a, b)[0].children and not sa_a.children
    with pytest.raises(Exception, match="model Child SA is"):
        collide.rekey_missing(a, sa_a, b"\x00\x00\x00\x01", model=child)
