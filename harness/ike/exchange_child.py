"""CREATE_CHILD_SA and INFORMATIONAL, both roles (RFC 7296 s1.3, s1.4, s2.8, s2.8.1, s2.8.2).

New Child SAs, Child SA rekey (REKEY_SA, with or without KE), IKE SA rekey, Deletes of
Child SAs and of the IKE SA, liveness checks and error notifies in INFORMATIONAL requests.
Simultaneous rekeys are resolved by nonces: the exchange holding the lowest of the four
nonces loses, and its initiator deletes the SA it created; the winner's initiator deletes
the old SA.
"""
from __future__ import annotations

from dataclasses import replace

from harness.crypto import TransformType, ke as ke_group
from harness.errors import IkeError, KeyExchangeError, NoProposalChosen
from harness.ike import child
from harness.ike.events import ChildSaDeleted, IkeSaEstablished, Informational, KeRetry
from harness.ike.keys import derive_ike_keys, rekey_skeyseed
from harness.ike.proposals import Proposal, Protocol, Suite, Transform, check_chosen, select, with_spi
from harness.ike.sa import IkeSa, Pending, State
from harness.ike.view import CREATE_CHILD_SA, INFORMATIONAL, Delete, Msg, Notify

ERRORS_IN_INFORMATIONAL = ("AUTHENTICATION_FAILED", "INVALID_SYNTAX", "INVALID_MESSAGE_ID", "INVALID_SPI",
                           "UNSUPPORTED_CRITICAL_PAYLOAD", "INVALID_IKE_SPI", "INVALID_MAJOR_VERSION")


def _nonce(ep) -> bytes:
    n = ep.config.bugs.nonce_length
    size = n if n is not None else ep.config.nonce_size
    fill, ep.config.bugs.nonce_fill = ep.config.bugs.nonce_fill, None
    return bytes([fill]) * size if fill is not None else ep.rng(size)


def _with_ke(proposals: list[Proposal], group: int | None) -> list[Proposal]:
    """The proposals with their KE transforms replaced by group (None: as configured; 0: no KE)."""
    if group is None:
        return list(proposals)
    extra = (Transform(TransformType.KE, group),) if group else ()
    return [replace(p, transforms=tuple(sorted([t for t in p.transforms if t.type != TransformType.KE] + list(extra),
                                                key=lambda t: t.type))) for p in proposals]


def _first_group(proposals: list[Proposal]) -> int | None:
    return next((t.id for p in proposals for t in p.transforms if t.type == TransformType.KE and t.id), None)


def _child_protocol_id(c) -> int:
    return int(c.protocol)


# ---- requests --------------------------------------------------------------------------------------

def _require_established(sa: IkeSa) -> None:
    if sa.state != State.ESTABLISHED:
        raise IkeError(f"IKE SA is {sa.state.value}, not established", "TEMPORARY_FAILURE")


def request_new_child(ep, sa: IkeSa, proposals: list[Proposal] | None = None, pfs_group: int | None = None,
                      ts_local=None, ts_remote=None, mode: str | None = None, _rekey: bytes | None = None,
                      _retried: bool = False) -> list:
    """Send CREATE_CHILD_SA for a new (or, with _rekey, a rekeyed) Child SA."""
    _require_established(sa)
    props = _with_ke(proposals or ep.config.child_proposals, pfs_group)
    d_local, d_remote = child.default_ts(ep, sa)
    group = _first_group(props)
    ctx: dict = {"proposals": proposals, "pfs_group": pfs_group, "rekey": _rekey, "retried": _retried}

    def build(msg: Msg) -> None:
        if _rekey is not None:
            old = sa.children[_rekey]
            msg.notifies.append(Notify("REKEY_SA", protocol=int(old.protocol), spi=old.spi_in))
        ctx.update(child.offer(ep, sa, msg, props, ts_local or d_local, ts_remote or d_remote, mode or ep.config.mode))
        ctx["ni"] = msg.nonce = _nonce(ep)
        if group is not None and not ep.config.bugs.omit_ke:
            priv = ep.ke_private(ke_group(group))
            ctx["ke_private"] = priv
            msg.ke = (ep.config.bugs.ke_group_mismatch or group, priv.public)

    return ep.send_request(sa, CREATE_CHILD_SA, build, Pending("rekey_child" if _rekey else "create_child", ctx))


def request_rekey_child(ep, sa: IkeSa, spi_in: bytes, pfs_group: int | None = None) -> list:
    """Send CREATE_CHILD_SA with REKEY_SA for the Child SA whose inbound SPI is spi_in."""
    old = sa.children.get(spi_in)
    if old is None:
        raise IkeError(f"no Child SA with inbound SPI {spi_in.hex()}", "CHILD_SA_NOT_FOUND")
    sa.rekey.setdefault("child_rekeying", set()).add(spi_in)
    return request_new_child(ep, sa, None, pfs_group, list(old.ts_local), list(old.ts_remote), old.mode, _rekey=spi_in)


def request_rekey_ike(ep, sa: IkeSa) -> list:
    """Send CREATE_CHILD_SA with an IKE proposal (new SPIi), Ni and KEi to rekey the IKE SA."""
    _require_established(sa)
    ctx: dict = {}

    def build(msg: Msg) -> None:
        ctx["spi_i"] = spi = ep.rng(8)
        ctx["offered"] = msg.sa = with_spi(ep.config.ike_proposals, spi)
        ctx["ni"] = msg.nonce = _nonce(ep)
        group = _first_group(ep.config.ike_proposals)
        ctx["ke_private"] = priv = ep.ke_private(ke_group(group))
        msg.ke = (group, priv.public)

    sa.rekey["ike_rekeying"] = True
    return ep.send_request(sa, CREATE_CHILD_SA, build, Pending("rekey_ike", ctx))


def delete_spis(ep, sa: IkeSa, protocol: int, spis: list[bytes]) -> list:
    """Send an INFORMATIONAL Delete for our inbound SPIs of one protocol."""
    return ep.send_request(sa, INFORMATIONAL, lambda m: m.deletes.append(Delete(protocol, list(spis))),
                           Pending("delete_child", {"spis": list(spis)}))


def request_delete_child(ep, sa: IkeSa, spi_in: bytes) -> list:
    """Send an INFORMATIONAL Delete for the Child SA whose inbound SPI is spi_in."""
    c = sa.children.get(spi_in)
    if c is None:
        raise IkeError(f"no Child SA with inbound SPI {spi_in.hex()}", "CHILD_SA_NOT_FOUND")
    return delete_spis(ep, sa, _child_protocol_id(c), [spi_in])


def request_delete_ike(ep, sa: IkeSa) -> list:
    """Send an INFORMATIONAL Delete of the IKE SA."""
    if sa.state == State.DELETED:
        return []
    out = ep.send_request(sa, INFORMATIONAL, lambda m: m.deletes.append(Delete(1)),
                          Pending("delete_ike", {"reason": "deleted by us"}))
    sa.state = State.DELETING
    return out


# ---- responses to our requests ---------------------------------------------------------------------

def on_response(ep, sa: IkeSa, msg: Msg, pending: Pending) -> list:
    """Handle the response to one of our CREATE_CHILD_SA / INFORMATIONAL requests."""
    k = pending.kind
    if msg.exchange == INFORMATIONAL:
        ep.events.append(Informational(True, msg.message_id, _payloads(msg)))
    if k in ("create_child", "rekey_child"):
        return _child_response(ep, sa, msg, pending)
    if k == "rekey_ike":
        return _ike_rekey_response(ep, sa, msg, pending)
    if k == "delete_child":
        for spi in pending.data["spis"]:
            c = sa.children.pop(spi, None)
            if c is not None:
                ep.events.append(ChildSaDeleted("esp" if c.protocol == Protocol.ESP else "ah",
                                                int.from_bytes(c.spi_in, "big"), int.from_bytes(c.spi_out, "big")))
        return []
    if k == "delete_ike":
        ep.remove_sa(sa, pending.data.get("reason", "deleted"))
        return []
    for n in msg.notifies:  # "info": liveness and error reports; errors in a response are reported
        if n.type in ERRORS_IN_INFORMATIONAL:
            ep.fail("INFORMATIONAL", IkeError(f"peer answered with {n.type}", n.type), True)
    return []


def _child_response(ep, sa: IkeSa, msg: Msg, pending: Pending) -> list:
    ctx = pending.data
    rekey = ctx.get("rekey")
    err = child.error_notify(msg)
    if err is not None:
        if rekey is not None:
            sa.rekey.get("child_rekeying", set()).discard(rekey)
        if err.type == "INVALID_KE_PAYLOAD" and len(err.data) >= 2 and not ctx.get("retried"):
            group = int.from_bytes(err.data[:2], "big")
            ep.events.append(KeRetry("CREATE_CHILD_SA", group))
            if rekey is not None:
                sa.rekey.setdefault("child_rekeying", set()).add(rekey)
                old = sa.children[rekey]
                return request_new_child(ep, sa, ctx["proposals"], group, list(old.ts_local), list(old.ts_remote),
                                         old.mode, _rekey=rekey, _retried=True)
            return request_new_child(ep, sa, ctx["proposals"], group, ctx["ts_local"], ctx["ts_remote"], ctx["mode"],
                                     _retried=True)
        ep.fail("CREATE_CHILD_SA", IkeError(f"peer refused the Child SA: {err.type}", err.type), True)
        return []
    if msg.nonce is None:
        ep.fail("CREATE_CHILD_SA", IkeError("response without Nonce", "INVALID_SYNTAX"), False)
        return []
    try:
        new = child.complete(ep, sa, msg, ctx, ctx["ni"], msg.nonce, ctx.get("ke_private"))
    except (IkeError, KeyExchangeError) as e:
        ep.fail("CREATE_CHILD_SA", e if isinstance(e, IkeError) else IkeError(str(e), "INVALID_SYNTAX"), False)
        if msg.sa and len(msg.sa[0].spi) == 4:
            return delete_spis(ep, sa, int(msg.sa[0].protocol), [ctx["spi_in"]])
        return []
    child.install(ep, sa, new, rekey)
    if rekey is None:
        return []
    sa.rekey.get("child_rekeying", set()).discard(rekey)
    old = sa.children.get(rekey)
    if old is None:
        return []  # the peer deleted it meanwhile
    old.rekeyed = True
    theirs = sa.rekey.get("child_collisions", {}).pop(rekey, None)
    if theirs is not None:  # RFC 7296 s2.8.1: both rekeyed the same Child SA
        ours_lowest = min(ctx["ni"], msg.nonce) < min(theirs["ni"], theirs["nr"])
        if ours_lowest:  # our exchange lost: close the SA we created; the peer deletes the old one
            return delete_spis(ep, sa, int(new.protocol), [new.spi_in])
    return delete_spis(ep, sa, int(old.protocol), [old.spi_in])


def _ike_rekey_response(ep, sa: IkeSa, msg: Msg, pending: Pending) -> list:
    ctx = pending.data
    sa.rekey.pop("ike_rekeying", None)
    err = child.error_notify(msg)
    if err is not None:
        ep.fail("CREATE_CHILD_SA", IkeError(f"peer refused the IKE SA rekey: {err.type}", err.type), True)
        return []
    try:
        if msg.sa is None or msg.nonce is None or msg.ke is None:
            raise IkeError("IKE rekey response without SA, Nonce or KE", "INVALID_SYNTAX")
        chosen = check_chosen(ctx["offered"], msg.sa)
        if len(chosen.spi) != 8:
            raise NoProposalChosen(f"new IKE SPI is {len(chosen.spi)} octets, expected 8")
        suite = Suite.of(chosen)
        priv = ctx["ke_private"]
        if suite.ke is None or suite.ke.id != priv.group.id or msg.ke[0] != suite.ke.id:
            raise IkeError("IKE rekey KE group does not match the choice", "INVALID_SYNTAX")
        g_ir = priv.exchange(msg.ke[1])
    except (IkeError, KeyExchangeError) as e:
        ep.fail("CREATE_CHILD_SA", e if isinstance(e, IkeError) else IkeError(str(e), "INVALID_SYNTAX"), False)
        return []
    new = _make_rekeyed(ep, sa, True, ctx["spi_i"], chosen.spi, suite, ctx["ni"], msg.nonce, g_ir)
    theirs = sa.rekey.pop("ike_collision", None)
    if theirs is not None:  # RFC 7296 s2.8.2: both rekeyed the IKE SA
        if min(ctx["ni"], msg.nonce) < min(theirs["ni"], theirs["nr"]):
            # ours lost: delete the new SA we created; the surviving one (theirs) keeps the Child SAs
            winner = theirs["sa"]
            winner.children.update(new.children)
            new.children.clear()
            return request_delete_ike(ep, new)
        loser = theirs["sa"]
        new.children.update(loser.children)
        loser.children.clear()
    return request_delete_ike(ep, sa)


def _make_rekeyed(ep, old: IkeSa, we_initiated: bool, spi_i: bytes, spi_r: bytes, suite: Suite,
                  ni: bytes, nr: bytes, g_ir: bytes) -> IkeSa:
    """The IKE SA replacing old (RFC 7296 s2.18): new keys, the Child SAs moved over, old marked REKEYED."""
    new = ep.new_sa(we_initiated, spi_i, spi_r, old.remote, State.ESTABLISHED)
    new.local = old.local
    new.suite, new.ni, new.nr = suite, ni, nr
    new.keys = derive_ike_keys(suite.prf, suite.encr, suite.key_bits, suite.integ,
                               rekey_skeyseed(suite.prf, old.keys.sk_d, g_ir, ni, nr), ni, nr, spi_i, spi_r)
    new.peer_id, new.peer_hashes, new.peer_fragmentation = old.peer_id, old.peer_hashes, old.peer_fragmentation
    new.peer_auth = old.peer_auth
    new.nat_local, new.nat_remote, new.peer_window = old.nat_local, old.nat_remote, old.peer_window
    new.window.window_size = old.window.window_size
    new.children, old.children = old.children, {}
    old.state = State.REKEYED
    ep.sas[new.local_spi] = new
    ep.events.append(IkeSaEstablished(new.ike_keys, new.peer_id, old.spi_i + old.spi_r, new.peer_auth,
                                      started=child.request_sent(old, we_initiated), we_initiated=we_initiated))
    return new


# ---- requests from the peer ------------------------------------------------------------------------

def on_request(ep, sa: IkeSa, msg: Msg) -> Msg:
    """The response to a CREATE_CHILD_SA or INFORMATIONAL request."""
    resp = Msg(msg.exchange, msg.message_id, True, sa.original_initiator, sa.spi_i, sa.spi_r, encrypted=True)
    if msg.exchange == INFORMATIONAL:
        _informational(ep, sa, msg, resp)
        return resp
    try:
        if sa.state != State.ESTABLISHED:
            raise IkeError(f"IKE SA is {sa.state.value}", "TEMPORARY_FAILURE")
        if msg.nonce is None or not msg.sa:
            raise IkeError("CREATE_CHILD_SA request without SA or Nonce", "INVALID_SYNTAX")
        if msg.sa[0].protocol == Protocol.IKE:
            _rekey_ike_request(ep, sa, msg, resp)
        else:
            _child_request(ep, sa, msg, resp)
    except IkeError as e:
        ep.fail("CREATE_CHILD_SA", e, False)
        resp.sa = resp.ke = resp.nonce = resp.ts_i = resp.ts_r = None
        resp.notifies = [Notify(e.notify, e.data)]
    return resp


def _child_request(ep, sa: IkeSa, msg: Msg, resp: Msg) -> None:
    rekey = msg.notify("REKEY_SA")
    old = None
    if rekey is not None:
        old = sa.child_by_out(rekey.spi)
        if old is None:
            raise IkeError(f"REKEY_SA for unknown SPI {rekey.spi.hex()}", "CHILD_SA_NOT_FOUND",)
        if any(p.kind == "delete_child" and old.spi_in in p.data["spis"] for p in sa.pending.values()):
            # RFC 7296 s2.25.1: a rekey of a Child SA we are closing SHOULD be answered TEMPORARY_FAILURE
            raise IkeError(f"REKEY_SA for 0x{old.spi_in.hex()}, which we are deleting", "TEMPORARY_FAILURE")
    elif ep.config.max_children is not None and \
            sum(not c.rekeyed for c in sa.children.values()) >= ep.config.max_children:
        raise IkeError(f"at most {ep.config.max_children} Child SAs", "NO_ADDITIONAL_SAS")
    resp.nonce = _nonce(ep)
    new = child.accept(ep, sa, msg, resp, msg.nonce, resp.nonce, ep.config.child_proposals, allow_ke=True)
    child.install(ep, sa, new, old.spi_in if old else None)
    if old is not None:
        old.rekeyed = True
        if old.spi_in in sa.rekey.get("child_rekeying", set()):
            sa.rekey.setdefault("child_collisions", {})[old.spi_in] = {"ni": msg.nonce, "nr": resp.nonce,
                                                                        "new": new.spi_in}


def _rekey_ike_request(ep, sa: IkeSa, msg: Msg, resp: Msg) -> None:
    if any(p.kind in ("create_child", "rekey_child") for p in sa.pending.values()):
        raise IkeError("a Child SA exchange is in progress", "TEMPORARY_FAILURE")
    chosen = select(msg.sa, ep.config.ike_proposals, prefer_ke=msg.ke[0] if msg.ke else None)
    if len(chosen.spi) != 8:
        raise IkeError(f"IKE rekey proposal SPI is {len(chosen.spi)} octets", "INVALID_SYNTAX")
    suite = Suite.of(chosen)
    g_ir, public = child.answer_ke(ep, suite.ke, msg.ke)
    spi_r = ep.rng(8)
    resp.sa, resp.nonce, resp.ke = [replace(chosen, spi=spi_r)], _nonce(ep), (suite.ke.id, public)
    if sa.rekey.get("ike_rekeying"):
        # simultaneous IKE SA rekey: create the SA but keep the Child SAs on the old one until ours completes
        children = sa.children
        new = _make_rekeyed(ep, sa, False, chosen.spi, spi_r, suite, msg.nonce, resp.nonce, g_ir)
        sa.children, new.children = children, {}
        sa.state = State.ESTABLISHED
        sa.rekey["ike_collision"] = {"ni": msg.nonce, "nr": resp.nonce, "sa": new}
    else:
        _make_rekeyed(ep, sa, False, chosen.spi, spi_r, suite, msg.nonce, resp.nonce, g_ir)


def _payloads(msg: Msg) -> tuple[str, ...]:
    """What an INFORMATIONAL message carried: "D" per Delete payload, then each notify's type."""
    return ("D",) * len(msg.deletes) + tuple(n.type for n in msg.notifies)


def _informational(ep, sa: IkeSa, msg: Msg, resp: Msg) -> None:
    ep.events.append(Informational(False, msg.message_id, _payloads(msg)))
    for n in msg.notifies:
        if n.type in ERRORS_IN_INFORMATIONAL:
            ep.fail("INFORMATIONAL", IkeError(f"peer reported {n.type}", n.type), True)
            if n.type == "AUTHENTICATION_FAILED":
                sa.delete_after_response = "peer reported AUTHENTICATION_FAILED"
    for d in msg.deletes:
        if d.protocol == Protocol.IKE:
            sa.delete_after_response = "deleted by the peer"
            continue
        ours = []
        for spi in d.spis:
            c = sa.child_by_out(spi)
            if c is None:
                continue  # RFC 7296 s1.4.1: already gone (e.g. both deleted it); nothing to answer
            del sa.children[c.spi_in]
            ours.append(c.spi_in)
            ep.events.append(ChildSaDeleted("esp" if c.protocol == Protocol.ESP else "ah",
                                            int.from_bytes(c.spi_in, "big"), int.from_bytes(c.spi_out, "big")))
        # RFC 7296 s1.4.1: if we also asked to delete it, the SPIs in flight are answered empty
        in_flight = {s for p in sa.pending.values() if p.kind == "delete_child" for s in p.data["spis"]}
        ours = [s for s in ours if s not in in_flight]
        if ours:
            resp.deletes.append(Delete(d.protocol, ours))


def after_request(ep, sa: IkeSa) -> list:
    """Requests to send after answering one (none yet: simultaneous rekeys are settled on our response)."""
    return []
