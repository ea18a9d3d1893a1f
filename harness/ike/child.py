"""Child SA negotiation shared by IKE_AUTH and CREATE_CHILD_SA (RFC 7296 s1.3.1, s2.9, s2.17).

`offer` fills a request's SA, TSi, TSr and mode notifies; `accept` is the responder's side
(proposal choice, KE, narrowing, keys); `complete` is the initiator's check of the answer;
`install` records the Child SA and reports it with ChildSaEstablished.
"""
from __future__ import annotations

from harness.addresses import packed
from harness.errors import IkeError, KeyExchangeError, NoProposalChosen
from harness.ike.events import ChildSaEstablished
from harness.ike.keys import derive_child_keys
from harness.ike.proposals import Proposal, Suite, check_chosen, select, with_spi
from harness.ike.sa import ChildSa, IkeSa
from harness.ike.ts import TrafficSelector, check_narrowed, narrow
from harness.ike.view import Msg, Notify

# RFC 7296 s3.10.1 error types that end a Child SA negotiation but not the IKE SA
CHILD_ERRORS = ("NO_PROPOSAL_CHOSEN", "TS_UNACCEPTABLE", "SINGLE_PAIR_REQUIRED", "NO_ADDITIONAL_SAS",
                "INTERNAL_ADDRESS_FAILURE", "FAILED_CP_REQUIRED", "INVALID_SELECTORS", "TEMPORARY_FAILURE",
                "CHILD_SA_NOT_FOUND", "INVALID_KE_PAYLOAD", "INVALID_SYNTAX", "UNSUPPORTED_CRITICAL_PAYLOAD")


def new_spi(ep, sa: IkeSa) -> bytes:
    """A fresh 4-octet inbound SPI, above the reserved range 1-255 and unused on this SA."""
    while True:
        spi = ep.rng(4)
        if int.from_bytes(spi, "big") > 255 and spi not in sa.children:
            return spi


def default_ts(ep, sa: IkeSa) -> tuple[list[TrafficSelector], list[TrafficSelector]]:
    """(local, remote) selectors from the config, else the two IKE endpoints' addresses."""
    c = ep.config
    return (list(c.local_ts) or [TrafficSelector.of(sa.local[0])], list(c.remote_ts) or [TrafficSelector.of(sa.remote[0])])


def offer(ep, sa: IkeSa, msg: Msg, proposals: list[Proposal], ts_local, ts_remote, mode: str) -> dict:
    """Fill msg with SA (our new inbound SPI), TSi, TSr and mode notifies; the context `complete` needs."""
    spi_in = new_spi(ep, sa)
    offered = with_spi(proposals, spi_in)
    msg.sa, msg.ts_i, msg.ts_r = offered, list(ts_local), list(ts_remote)
    if mode == "transport":
        msg.notifies.append(Notify("USE_TRANSPORT_MODE"))
    if not ep.config.tfc_padding:
        msg.notifies.append(Notify("ESP_TFC_PADDING_NOT_SUPPORTED"))
    return {"spi_in": spi_in, "offered": offered, "ts_local": list(ts_local), "ts_remote": list(ts_remote), "mode": mode}


def error_notify(msg: Msg) -> Notify | None:
    """The first error notify (type below 16384, by name) in a response, or None."""
    return next((n for n in msg.notifies if n.type in CHILD_ERRORS or n.type == "AUTHENTICATION_FAILED"), None)


def answer_ke(ep, group, ke: tuple[int, bytes] | None) -> tuple[bytes, bytes]:
    """Responder: (g^ir, our KE data) for the chosen group; IkeError INVALID_KE_PAYLOAD or INVALID_SYNTAX otherwise."""
    if ke is None or ke[0] != group.id:
        raise IkeError(f"KE payload is for group {ke[0] if ke else None}, chose {group.name}",
                       "INVALID_KE_PAYLOAD", group.id.to_bytes(2, "big"))
    priv = ep.ke_private(group)
    try:
        return priv.exchange(ke[1]), priv.public
    except KeyExchangeError as e:
        raise IkeError(str(e), "INVALID_SYNTAX") from None


def accept(ep, sa: IkeSa, req: Msg, resp: Msg, ni: bytes, nr: bytes, local: list[Proposal],
           allow_ke: bool) -> ChildSa:
    """Responder: choose a proposal, run the KE, narrow TSi/TSr, fill resp; IkeError (the notify to send) on failure."""
    if not req.sa or req.ts_i is None or req.ts_r is None:
        raise IkeError("Child SA request without SA, TSi or TSr", "INVALID_SYNTAX")
    if ep.config.bugs.refuse_child:
        raise IkeError(f"Bugs.refuse_child: refusing with {ep.config.bugs.refuse_child}", ep.config.bugs.refuse_child)
    chosen = select(req.sa, local, prefer_ke=req.ke[0] if req.ke else None)
    suite = Suite.of(chosen)
    if len(chosen.spi) != 4:
        raise IkeError(f"Child SA proposal SPI is {len(chosen.spi)} octets", "INVALID_SYNTAX")
    g_ir = b""
    if suite.ke is not None:
        if not allow_ke:
            raise NoProposalChosen("a KE method cannot be negotiated for the first Child SA")
        g_ir, public = answer_ke(ep, suite.ke, req.ke)
        resp.ke = (suite.ke.id, public)
    policy_local, policy_remote = default_ts(ep, sa)
    tsi = narrow(req.ts_i, policy_remote, ep.config.single_pair)
    tsr = narrow(req.ts_r, policy_local, ep.config.single_pair)
    mode = "transport" if req.notify("USE_TRANSPORT_MODE") and ep.config.mode == "transport" else "tunnel"
    spi_in = new_spi(ep, sa)
    resp.sa = with_spi([chosen], spi_in)
    resp.ts_i, resp.ts_r = list(tsi.selectors), list(tsr.selectors)
    if mode == "transport":
        resp.notifies.append(Notify("USE_TRANSPORT_MODE"))
    if tsi.additional_possible or tsr.additional_possible:
        resp.notifies.append(Notify("ADDITIONAL_TS_POSSIBLE"))
    if not ep.config.tfc_padding:
        resp.notifies.append(Notify("ESP_TFC_PADDING_NOT_SUPPORTED"))
    keys = derive_child_keys(sa.suite.prf, sa.keys.sk_d, ni, nr, suite.encr, suite.key_bits, suite.integ, g_ir)
    return ChildSa(chosen.protocol, mode, spi_in, chosen.spi, suite, keys, False, tsr.selectors, tsi.selectors,
                   (ni, nr), sa.nat_local or sa.nat_remote,
                   peer_tfc_padding=req.notify("ESP_TFC_PADDING_NOT_SUPPORTED") is None)


def complete(ep, sa: IkeSa, resp: Msg, ctx: dict, ni: bytes, nr: bytes, ke_private=None) -> ChildSa:
    """Initiator: check the responder's SA, KE, TSi/TSr and mode; derive keys; IkeError if the answer is wrong."""
    if resp.sa is None or resp.ts_i is None or resp.ts_r is None:
        raise IkeError("Child SA response without SA, TSi or TSr", "INVALID_SYNTAX")
    chosen = check_chosen(ctx["offered"], resp.sa)
    suite = Suite.of(chosen)
    g_ir = b""
    if suite.ke is not None:
        if ke_private is None or ke_private.group.id != suite.ke.id or resp.ke is None or resp.ke[0] != suite.ke.id:
            raise IkeError(f"responder chose KE {suite.ke.name} without a matching KE exchange", "INVALID_SYNTAX")
        try:
            g_ir = ke_private.exchange(resp.ke[1])
        except KeyExchangeError as e:
            raise IkeError(str(e), "INVALID_SYNTAX") from None
    mode = "transport" if resp.notify("USE_TRANSPORT_MODE") and ctx["mode"] == "transport" else "tunnel"
    if not (mode == "transport" and sa.nat_local and substituted(resp.ts_i, sa.remote[0])):
        check_narrowed(ctx["ts_local"], resp.ts_i)  # else RFC 7296 s2.23.1: TSi is our address as the NAT shows it
    check_narrowed(ctx["ts_remote"], resp.ts_r)
    keys = derive_child_keys(sa.suite.prf, sa.keys.sk_d, ni, nr, suite.encr, suite.key_bits, suite.integ, g_ir)
    return ChildSa(chosen.protocol, mode, ctx["spi_in"], chosen.spi, suite, keys, True, tuple(resp.ts_i),
                   tuple(resp.ts_r), (ni, nr), sa.nat_local or sa.nat_remote,
                   additional_ts_possible=resp.notify("ADDITIONAL_TS_POSSIBLE") is not None,
                   peer_tfc_padding=resp.notify("ESP_TFC_PADDING_NOT_SUPPORTED") is None)


def substituted(ts_i: list[TrafficSelector], responder: str) -> bool:
    """True when a transport-mode responder put one host address other than its own in TSi: the address it meets the
    initiator at behind a NAT, which the initiator accepts in place of its own (RFC 7296 s2.23.1)."""
    return len(ts_i) == 1 and ts_i[0].start_addr == ts_i[0].end_addr and \
        ts_i[0].start_addr != packed(responder)


def install(ep, sa: IkeSa, child: ChildSa, rekeyed_spi: bytes | None = None) -> None:
    """Record the Child SA on its IKE SA and report it (ChildSaEstablished)."""
    sa.children[child.spi_in] = child
    inbound, outbound = child.sa_keys(sa.local[0], sa.remote[0])
    ep.events.append(ChildSaEstablished(inbound, outbound, child.ts_local, child.ts_remote, child.udp_encap,
                                        int.from_bytes(rekeyed_spi, "big") if rekeyed_spi else None,
                                        child.peer_tfc_padding, child.we_initiated, request_sent(sa, child.we_initiated)))


def request_sent(sa: IkeSa, we_initiated: bool) -> float | None:
    """When our request of the exchange being answered was first sent (the window's last answered one), if ours."""
    return sa.window.last.sent_at if we_initiated and sa.window.last is not None else None
