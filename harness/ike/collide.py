"""Rekey requests of the built-in end made to meet a peer's on purpose (RFC 7296 s2.8.1, s2.8.2, s2.25).

`cross` runs before the endpoint answers a CREATE_CHILD_SA request: with `Bugs.collide_rekeys` set and the request a
rekey (REKEY_SA for one of our Child SAs, or an IKE SA proposal), it first sends our own rekey of the same SA, so
the two requests cross: the peer gets ours while its own is outstanding, and we answer its request while ours is.
Our answer is held (`hold`) until the peer has answered our request, HOLD seconds at most: sent back to back, the two
could be taken in either order by a peer that handles datagrams on several threads (charon), which would then finish
its own rekey before it saw ours, and there would be no collision to check. For the same reason what follows that
answer (our Delete of the old or the redundant SA) waits SETTLE seconds (`settle`): charon 5.9, taking our Delete of
the old IKE SA before our answer, aborted its rekey and dropped the IKE SA we then held without a Delete.
The knob also chooses which exchange holds the lowest of the four nonces (the one whose SA is redundant):
"ours-lowest" makes our request's nonce all zero, "theirs-lowest" our response's, so the peer's exchange loses
(harness.ike.exchange_child takes a one-shot `Bugs.nonce_fill`). `rekey_missing` sends a REKEY_SA for a Child SA the
peer does not have (an SPI of our own making, or one deleted already), which s2.25.1 says the peer answers with
CHILD_SA_NOT_FOUND. `cross_delete` (with `Bugs.rekey_on_delete`) sends our rekey of a Child SA the peer is deleting
before we answer its Delete: the peer gets a rekey of an SA it is closing, which s2.25.1 says it answers with
TEMPORARY_FAILURE.
"""
from __future__ import annotations

from dataclasses import replace

from harness.errors import ConfigError
from harness.ike import exchange_child
from harness.ike.proposals import Protocol
from harness.ike.sa import ChildSa, IkeSa
from harness.ike.view import Msg

COLLIDE = ("ours-lowest", "theirs-lowest")
HOLD = 2.0  # seconds our answer to the crossed request waits at most for the peer's answer to ours
SETTLE = 0.3  # seconds between that answer and the requests that follow it (settle)
ZERO = 0x00  # the fill of a nonce made to be the lowest of the four


def cross(ep, sa: IkeSa, msg: Msg) -> list:  # noqa: ANN001 - ep: IkeEndpoint (a cycle to import)
    """Our own rekey of the SA that the peer's request msg rekeys, sent before we answer it (Bugs.collide_rekeys);
    [] for any other request or with the knob off."""
    how = ep.config.bugs.collide_rekeys
    if how is None or not msg.sa:
        return []
    if how not in COLLIDE:
        raise ConfigError(f"Bugs.collide_rekeys: {how!r} is not one of {', '.join(COLLIDE)}")
    bugs = ep.config.bugs
    if msg.sa[0].protocol == Protocol.IKE:
        send = lambda: exchange_child.request_rekey_ike(ep, sa)  # noqa: E731
    else:
        note = msg.notify("REKEY_SA")
        old = sa.child_by_out(note.spi) if note is not None else None
        if old is None or old.spi_in in sa.rekey.get("child_rekeying", set()):
            return []
        send = lambda: exchange_child.request_rekey_child(ep, sa, old.spi_in)  # noqa: E731
    bugs.nonce_fill = ZERO if how == "ours-lowest" else None
    out = send()
    bugs.nonce_fill = ZERO if how == "theirs-lowest" else None  # taken by the nonce of our response, made next
    bugs.collide_rekeys = None  # once: the rekeys that follow (and a retry) go as usual
    return out


def cross_delete(ep, sa: IkeSa, msg: Msg) -> list:  # noqa: ANN001 - ep: IkeEndpoint (a cycle to import)
    """Our rekey of the Child SA that the peer's INFORMATIONAL request msg deletes, sent before we answer it
    (Bugs.rekey_on_delete, once); [] for any other request or with the knob off."""
    bugs = ep.config.bugs
    if not bugs.rekey_on_delete:
        return []
    for d in msg.deletes:
        if d.protocol == Protocol.IKE:
            continue
        for spi in d.spis:
            old = sa.child_by_out(spi)
            if old is not None and not old.rekeyed:
                bugs.rekey_on_delete = False
                return exchange_child.request_rekey_child(ep, sa, old.spi_in)
    return []


def rekey_missing(ep, sa: IkeSa, spi_in: bytes, model: ChildSa | None = None) -> list:  # noqa: ANN001
    """CREATE_CHILD_SA with REKEY_SA naming spi_in, a Child SA the peer does not have (RFC 7296 s2.25.1): model is
    that Child SA as we held it before it was deleted, else the request is offered as a rekey of our first Child SA
    would be; the stand-in is gone again once the request is made."""
    if spi_in in sa.children:
        raise ConfigError(f"rekey_missing: 0x{spi_in.hex()} is one of our Child SAs")
    if model is None:
        if not sa.children:
            raise ConfigError("rekey_missing: the IKE SA has no Child SA to model the request on")
        model = replace(next(iter(sa.children.values())), spi_in=spi_in, spi_out=bytes(4))
    elif model.spi_in != spi_in:
        raise ConfigError(f"rekey_missing: the model Child SA is 0x{model.spi_in.hex()}, not 0x{spi_in.hex()}")
    sa.children[spi_in] = replace(model, rekeyed=False)
    try:
        return exchange_child.request_rekey_child(ep, sa, spi_in)
    finally:
        del sa.children[spi_in]


def hold(ep, sa: IkeSa, answer: list, now: float) -> None:  # noqa: ANN001
    """Keep our answer to the crossed request until the peer answered our own (release) or HOLD has passed (due);
    the endpoint lists the SA, so its timers look at holding SAs only."""
    sa.rekey["held_answer"] = (now + HOLD, answer)
    ep.holding.append(sa)


def release(sa: IkeSa) -> list:
    """The answer held for the crossed request, now; [] when none is held."""
    held = sa.rekey.pop("held_answer", None)
    return held[1] if held else []


def settle(ep, after: list, now: float) -> None:  # noqa: ANN001
    """Keep what follows the released answer (our Delete of the old or the redundant SA) SETTLE seconds, on the
    endpoint (the old SA may be gone by then): sent back to back with the answer, a peer's threads could take the
    Delete first and abort the rekey the answer completes."""
    if after:
        ep.deferred.append((now + SETTLE, after))


def due(ep) -> float | None:  # noqa: ANN001
    """When something held goes out at the latest; None when nothing is held."""
    ep.holding = [sa for sa in ep.holding if "held_answer" in sa.rekey]
    times = [sa.rekey["held_answer"][0] for sa in ep.holding]
    return min(times + [t for t, _ in ep.deferred], default=None)


def release_due(ep, now: float) -> list:  # noqa: ANN001
    """What is held and due by now."""
    out = [d for sa in ep.holding if sa.rekey.get("held_answer", (now + 1,))[0] <= now for d in release(sa)]
    out += [d for t, after in ep.deferred if t <= now for d in after]
    ep.deferred = [(t, after) for t, after in ep.deferred if t > now]
    return out
