"""The sans-IO IKEv2 endpoint: initiator and responder of every IKE SA of one configuration.

`IkeEndpoint.process(datagram, src, dst)` returns the datagrams to send; requests start with
`initiate`, `create_child`, `rekey_child`, `rekey_ike`, `delete_child`, `delete_ike` and
`liveness` (and `probe`, a request bent on purpose or sent with a chosen Message ID; `resend_last`, the last answered
request again byte for byte); `tick()` runs retransmissions on the injected clock. Nothing here opens a
socket or installs an SA: results are events (harness.ike.events) the driver acts on, e.g.
ChildSaEstablished carrying the inbound and outbound SAs for the ESP/AH data plane.
Exchanges: harness.ike.exchange_init (IKE_SA_INIT, IKE_AUTH) and harness.ike.exchange_child
(CREATE_CHILD_SA, INFORMATIONAL); this module owns dispatch, Message IDs and timers.
"""
from __future__ import annotations

import os
import struct
import time
from collections.abc import Sequence
from typing import Callable

from harness.crypto import KeGroup, KePrivate
from harness.errors import IkeError, IntegrityError, ParseError
from harness.ike import collide, exchange_child, exchange_init, view
from harness.ike.bend import Bend
from harness.ike.config import Bugs, IkeConfig, fragment_order
from harness.ike.datagram import Datagram
from harness.ike.events import (ChildSaDeleted, ExchangeFailed, FragmentReceived, FragmentsSent, IkeSaDeleted, PeerDead,
                                ProbeAnswered, ProbeSent, RequestIgnored, ResentAnswered)
from harness.ike.sa import Address, IkeSa, Pending, State
from harness.ike.view import INFORMATIONAL, Msg, Notify
from harness.ike.window import Outstanding, RequestWindow, ResponseCache


SKF_PAYLOAD = 53  # RFC 7383 s2.5


def _first_sending(datagrams: list[bytes], ops: tuple[tuple[str, int], ...]) -> list[bytes]:
    """The datagrams of a request's first sending: its fragments shaped by Bugs.fragment_sends when it has several."""
    if len(datagrams) < 2 or not ops:
        return datagrams
    return [datagrams[n - 1] for n in fragment_order(len(datagrams), ops)]


class IkeEndpoint:
    """One IKEv2 node for one connection configuration; drives any number of IKE SAs."""

    def __init__(self, config: IkeConfig, local: Address, clock: Callable[[], float] = time.monotonic,
                 rng: Callable[[int], bytes] = os.urandom) -> None:
        self.config, self.local, self.clock, self.rng = config, local, clock, rng
        self.sas: dict[bytes, IkeSa] = {}  # by our SPI
        self.half_open: dict[tuple[bytes, Address], IkeSa] = {}  # responder: (SPIi, peer) -> SA
        self.events: list = []
        self.cookie_secrets = {1: config.cookie_secret or rng(32)}
        self.invalid_mid_reported: set[bytes] = set()
        self.deferred: list[tuple[float, list[Datagram]]] = []  # datagrams sent later on purpose (collide.settle)
        self.holding: list[IkeSa] = []  # SAs holding an answer to a crossed request (collide.hold)
        self.resent: dict[tuple[bytes, int], Outstanding] = {}  # (our SPI, Message ID): requests sent again (resend_last)
        self.retransmitted = 0  # datagrams tick() has sent again (RFC 7296 s2.1), over the endpoint's life

    # ---- public API -------------------------------------------------------------------

    def initiate(self, remote: Address, childless: bool = False) -> list[Datagram]:
        """Start an IKE SA (IKE_SA_INIT, then IKE_AUTH with the first Child SA, or without one when childless:
        RFC 6023) with the peer at remote."""
        return exchange_init.start(self, remote, childless)

    def process(self, data: bytes, src: Address, dst: Address | None = None) -> list[Datagram]:
        """Handle one received IKE message (without non-ESP marker); the datagrams to send in return."""
        dst = dst or self.local
        try:
            head = view.peek(data)
        except ParseError:
            return []  # RFC 7296 s2.21.1: malformed messages outside a known SA are dropped
        if head.major_version != 2:
            return exchange_init.invalid_major_version(self, head, src, dst) if not head.response else []
        name = view.exchange_name(head.exchange)
        if not head.response and name in self.config.bugs.ignore_requests:
            self.events.append(RequestIgnored(name, head.message_id, head.spi_i, self.clock(), data))
            return []
        if head.exchange == view.IKE_SA_INIT and not head.response:
            return exchange_init.on_init_request(self, data, head, src, dst)
        if head.exchange == view.IKE_SA_INIT:
            sa = self.sas.get(head.spi_i)
            return exchange_init.on_init_response(self, sa, data, head, src) if sa else []
        sa = self.sas.get(head.spi_r if head.initiator else head.spi_i)
        if sa is None or sa.state == State.DELETED:
            return self._invalid_ike_spi(head, src, dst)
        if head.response:
            return self._on_response(sa, data, head, src)
        return self._on_request(sa, data, head, src, dst)

    def tick(self) -> list[Datagram]:
        """Retransmit requests that are due and give up on those out of tries (PeerDead)."""
        now = self.clock()
        out: list[Datagram] = collide.release_due(self, now)  # answers held and requests deferred on purpose
        for sa in list(self.sas.values()):
            if not sa.original_initiator and sa.state == State.INIT_DONE and \
                    now - sa.created_at >= self.config.half_open_timeout:
                self.remove_sa(sa, f"half-open: no IKE_AUTH within {self.config.half_open_timeout} s")
                continue
            if self.config.bugs.no_retransmit:
                continue
            resend, dead = sa.window.due(now)
            self.retransmitted += len(resend)
            out += [Datagram(d, sa.local, sa.remote) for d in resend]
            for o in dead:
                self.events.append(PeerDead(o.exchange, o.message_id))
                self.remove_sa(sa, f"no response to {o.exchange} (Message ID {o.message_id})")
        return out

    def next_timer(self) -> float | None:
        """When tick() next has work, on the injected clock (None: no request outstanding)."""
        due = [t for sa in self.sas.values() if sa.window.outstanding and (t := sa.window.next_due()) is not None]
        if (held := collide.due(self)) is not None:
            due.append(held)
        due += [sa.created_at + self.config.half_open_timeout for sa in self.sas.values()
                if not sa.original_initiator and sa.state == State.INIT_DONE]
        return min(due, default=None)

    def drain_events(self) -> list:
        """The events since the last call, oldest first."""
        out, self.events = self.events, []
        return out

    def established(self) -> list[IkeSa]:
        """The IKE SAs that are established (not rekeyed away, not deleted)."""
        return [sa for sa in self.sas.values() if sa.state == State.ESTABLISHED]

    def create_child(self, sa: IkeSa, **options) -> list[Datagram]:
        """CREATE_CHILD_SA for a new Child SA (options: proposals, pfs_group (None as configured, 0 none), ts_local, ts_remote, mode)."""
        return exchange_child.request_new_child(self, sa, **options)

    def rekey_child(self, sa: IkeSa, spi_in: bytes, pfs_group: int | None = None) -> list[Datagram]:
        """CREATE_CHILD_SA with REKEY_SA for the Child SA whose inbound SPI is spi_in (pfs_group: None as configured, 0 no KE)."""
        return exchange_child.request_rekey_child(self, sa, spi_in, pfs_group)

    def rekey_ike(self, sa: IkeSa) -> list[Datagram]:
        """CREATE_CHILD_SA rekeying the IKE SA (RFC 7296 s1.3.2)."""
        return exchange_child.request_rekey_ike(self, sa)

    def delete_child(self, sa: IkeSa, spi_in: bytes) -> list[Datagram]:
        """INFORMATIONAL with a Delete for the Child SA whose inbound SPI is spi_in."""
        return exchange_child.request_delete_child(self, sa, spi_in)

    def delete_ike(self, sa: IkeSa) -> list[Datagram]:
        """INFORMATIONAL with a Delete of the IKE SA (and with it every Child SA)."""
        return exchange_child.request_delete_ike(self, sa)

    def liveness(self, sa: IkeSa) -> list[Datagram]:
        """An empty INFORMATIONAL request (liveness check, RFC 7296 s2.4)."""
        return self.send_request(sa, INFORMATIONAL, lambda m: None, Pending("info"))

    def probe(self, sa: IkeSa, bends: Sequence[Bend], exchange: int = INFORMATIONAL,
              message_id: int | None = None) -> list[Datagram]:
        """An empty protected request on sa with bends applied, sent once with the next Message ID (or message_id,
        e.g. one outside the peer's window, RFC 7296 s2.3) and not taken unless the peer answers it protected; its
        answer, if any, is reported as ProbeAnswered (robustness and window cases)."""
        if sa.pending or sa.queue:
            raise IkeError("probe: a request is outstanding on this IKE SA", "TEMPORARY_FAILURE")
        mid = sa.window.next_id if message_id is None else message_id & 0xFFFFFFFF
        msg = Msg(exchange, mid, False, sa.original_initiator, sa.spi_i, sa.spi_r, encrypted=True)
        name = view.exchange_name(exchange)
        datagrams = view.encode(msg, view.sk_keys(sa, sending=True), self.rng, 0,
                                Bugs(bends=tuple((f"{name} request", b) for b in bends)))
        sa.probes.add(mid)
        self.events.append(ProbeSent(mid, tuple(datagrams)))
        return [Datagram(d, sa.local, sa.remote) for d in datagrams]

    def resend_last(self, sa: IkeSa) -> list[Datagram]:
        """The request on sa answered last, again byte for byte, as a retransmission the peer must answer from its
        cache (RFC 7296 s2.1); its answer is reported as ResentAnswered and not processed. IkeError if none was."""
        last = sa.window.last
        if last is None:
            raise IkeError("resend_last: no request on this IKE SA was answered yet", "TEMPORARY_FAILURE")
        self.resent[(sa.local_spi, last.message_id)] = last
        return [Datagram(d, sa.local, sa.remote) for d in last.datagrams]

    def report_invalid_spi(self, sa: IkeSa, spi: int) -> list[Datagram]:
        """INFORMATIONAL with INVALID_SPI for an ESP/AH packet on an unknown SPI (RFC 7296 s2.21.4; data = the SPI)."""
        note = Notify("INVALID_SPI", spi.to_bytes(4, "big"))
        return self.send_request(sa, INFORMATIONAL, lambda m: m.notifies.append(note), Pending("info"))

    def wireshark(self) -> dict[str, list[str]]:
        """Wireshark tables for every live SA: "ikev2_decryption_table" and "esp_sa" lines (unsupported transforms left out)."""
        from harness.errors import ConfigError
        from harness.keys import esp_sa_lines
        ike, esp = [], []
        for sa in self.sas.values():
            if sa.keys is None or sa.state == State.DELETED:
                continue
            try:
                ike.append(sa.ike_keys.wireshark_line())
            except ConfigError:
                pass
            esp += [x for c in sa.children.values() for x in c.sa_keys(sa.local[0], sa.remote[0])]
        return {"ikev2_decryption_table": ike, "esp_sa": list(esp_sa_lines(esp)[0]) if esp else []}

    def export(self) -> dict:
        """Every live SA's keys: {"ike_sas": [...], "ipsec_sas": [...]} as JSON-ready dicts."""
        from harness.keys.jsonfile import ipsec_sa_to_json
        ike, ipsec = [], []
        for sa in self.sas.values():
            if sa.keys is None or sa.state == State.DELETED:
                continue
            ike.append(sa.ike_keys.to_json())
            for c in sa.children.values():
                ipsec += [ipsec_sa_to_json(x) for x in c.sa_keys(sa.local[0], sa.remote[0])]
        return {"ike_sas": ike, "ipsec_sas": ipsec}

    # ---- shared machinery for the exchange modules --------------------------------------

    def ke_private(self, group: KeGroup) -> KePrivate:
        """An ephemeral key for group drawn from the injected RNG (so runs with a seeded RNG repeat exactly).

        With the default RNG (os.urandom) an ECP key comes from OpenSSL's own generator instead: equally random, and
        about half the cost, since importing a given scalar (ec.derive_private_key) makes OpenSSL redo the public
        point as a pairwise check (issue 13's benchmark: 320k against 180k instructions per key).
        """
        if group.family == "ecp" and self.rng is os.urandom:
            return group.private_key()
        if group.family == "modp":
            x = int.from_bytes(self.rng(40), "big")
            secret = x % (group.q - 1) + 1 if group.q else x | (1 << 319)
        elif group.family == "ecp":
            bits = int(group.curve[2:])
            secret = int.from_bytes(self.rng(bits // 8 + 8), "big") % (1 << (bits - 1)) + 1
        else:
            secret = self.rng(group.public_size)
        return group.private_key(secret)

    def new_sa(self, initiator: bool, spi_i: bytes, spi_r: bytes, remote: Address, state: State) -> IkeSa:
        """A fresh IkeSa with this endpoint's window settings."""
        c = self.config
        return IkeSa(initiator, spi_i, spi_r, self.local, remote, state,
                     RequestWindow(timeout=c.retransmit_timeout, max_sends=c.retransmit_tries),
                     ResponseCache(window_size=c.window_size), created_at=self.clock())

    def encode(self, sa: IkeSa | None, msg: Msg) -> list[bytes]:
        """The datagrams of msg, SK-protected with the SA's keys when msg.encrypted (fragmented if negotiated)."""
        keys = view.sk_keys(sa, sending=True) if msg.encrypted else None
        frag = self.config.fragment_size if (sa is not None and sa.peer_fragmentation and self.config.fragmentation) else 0
        datagrams = view.encode(msg, keys, self.rng, frag, self.config.bugs)
        if len(datagrams) > 1:
            self.events.append(FragmentsSent(view.exchange_name(msg.exchange), msg.message_id,
                                             msg.response, tuple(len(d) for d in datagrams)))
        return datagrams

    def send_request(self, sa: IkeSa, exchange: int, build: Callable[[Msg], None], pending: Pending) -> list[Datagram]:
        """Send (or queue, when the window is full) an encrypted request; build fills in its payloads."""
        if not sa.window.can_send():
            sa.queue.append((exchange, build, pending))
            return []
        mid = sa.window.allocate()
        msg = Msg(exchange, mid, False, sa.original_initiator, sa.spi_i, sa.spi_r, encrypted=True)
        build(msg)
        datagrams = self.encode(sa, msg)
        first = _first_sending(datagrams, self.config.bugs.fragment_sends)
        sa.pending[mid] = pending
        sa.window.sent(mid, datagrams, self.clock(), view.exchange_name(exchange))
        return [Datagram(d, sa.local, sa.remote) for d in first]

    def flush_queue(self, sa: IkeSa) -> list[Datagram]:
        """Send queued requests that now fit in the window."""
        out: list[Datagram] = []
        while sa.queue and sa.window.can_send() and sa.state in (State.ESTABLISHED, State.REKEYED):
            exchange, build, pending = sa.queue.pop(0)
            out += self.send_request(sa, exchange, build, pending)
        return out

    def remove_sa(self, sa: IkeSa, reason: str) -> None:
        """Forget an IKE SA and its Child SAs, reporting ChildSaDeleted and IkeSaDeleted."""
        if sa.state == State.DELETED:
            return
        for c in sa.children.values():
            self.events.append(ChildSaDeleted("esp" if c.protocol == 3 else "ah", int.from_bytes(c.spi_in, "big"),
                                              int.from_bytes(c.spi_out, "big")))
        sa.children.clear()
        sa.state = State.DELETED
        self.sas.pop(sa.local_spi, None)
        for k in [k for k, v in self.half_open.items() if v is sa]:
            del self.half_open[k]
        self.events.append(IkeSaDeleted(sa.spi_i, sa.spi_r, reason))

    def fail(self, exchange: str, err: IkeError, received: bool) -> None:
        """Report a failed exchange (ExchangeFailed event)."""
        self.events.append(ExchangeFailed(exchange, err.notify, str(err), received))

    # ---- dispatch -------------------------------------------------------------------------

    def _invalid_ike_spi(self, head: Msg, src: Address, dst: Address) -> list[Datagram]:
        """RFC 7296 s2.21.4: answer a request for an unknown IKE SA with an unprotected INVALID_IKE_SPI."""
        if head.response:
            return []
        resp = Msg(head.exchange, head.message_id, True, not head.initiator, head.spi_i, head.spi_r,
                   notifies=[Notify("INVALID_IKE_SPI")])
        return [Datagram(d, dst, src) for d in view.encode(resp, None, self.rng, 0, None)]

    def _decode(self, sa: IkeSa, data: bytes) -> Msg | None:
        """The message decrypted with the SA's keys; None when it is a fragment still being reassembled."""
        msg = view.decode(data, view.sk_keys(sa, sending=False), sa.reassembler)
        if data[16] == SKF_PAYLOAD and len(data) >= 36:  # it verified (RFC 7383 s2.5 layout)
            head, (number, total) = view.peek(data), struct.unpack_from("!HH", data, 32)
            self.events.append(FragmentReceived(view.exchange_name(head.exchange),
                                                head.message_id, head.response, number, total, len(data)))
        return msg

    def _on_response(self, sa: IkeSa, data: bytes, head: Msg, src: Address) -> list[Datagram]:
        pending = sa.pending.get(head.message_id)
        if pending is None and (first := self.resent.get((sa.local_spi, head.message_id))) is not None:
            self.events.append(ResentAnswered(first.exchange, head.message_id, first.response, data))
            return []
        if pending is None and head.message_id in sa.probes:
            self._probe_answered(sa, data, head.message_id)
            return []
        if pending is None:
            return []  # not an answer to anything outstanding: drop (RFC 7296 s2.3)
        try:
            msg = self._decode(sa, data)
        except IntegrityError:
            return []  # RFC 7296 s2.21.2: a message failing integrity is dropped
        except ParseError as e:
            self.fail(view.exchange_name(head.exchange), IkeError(str(e), "INVALID_SYNTAX"), True)
            return []
        if msg is None:
            return []
        if not msg.encrypted:  # RFC 7296 s2.21.4: an unprotected notify is only a hint; keep waiting
            for n in msg.notifies:
                self.fail(view.exchange_name(head.exchange), IkeError(f"unprotected {n.type}", n.type), True)
            return []
        done = sa.window.answered(head.message_id)
        if done is not None:
            done.response = data
        del sa.pending[head.message_id]
        if sa.remote != src:
            sa.remote = src  # RFC 7296 s2.23: follow the peer's (NAT-mapped) address
        out = exchange_child.on_response(self, sa, msg, pending) if pending.kind != "auth" \
            else exchange_init.on_auth_response(self, sa, msg, pending)
        answer = collide.release(sa)
        if answer:  # the peer takes our answer before what follows it (collide.settle)
            collide.settle(self, out + self.flush_queue(sa), self.clock())
            return answer
        return out + self.flush_queue(sa)

    def _probe_answered(self, sa: IkeSa, data: bytes, mid: int) -> None:
        """Report the answer to a probe; a protected one took the Message ID, so ours moves on past it."""
        try:
            msg = self._decode(sa, data)
        except (IntegrityError, ParseError) as e:
            self.events.append(ProbeAnswered(mid, False, (f"undecodable: {e}",)))
            return
        if msg is None:
            return
        if msg.encrypted:
            sa.probes.discard(mid)
            if sa.window.next_id == mid:
                sa.window.next_id = (mid + 1) & 0xFFFFFFFF
        self.events.append(ProbeAnswered(mid, msg.encrypted, ("D",) * len(msg.deletes) + tuple(n.type for n in msg.notifies)))

    def _on_request(self, sa: IkeSa, data: bytes, head: Msg, src: Address, dst: Address) -> list[Datagram]:
        kind = sa.responses.classify(head.message_id)
        if kind == "retransmit":
            if data[16] == SKF_PAYLOAD and data[32:34] != b"\x00\x01":
                return []  # a retransmitted fragmented request: answer once, on its first fragment
            collide.release(sa)  # a held answer goes now, as the cached response
            return [Datagram(d, dst, src) for d in sa.responses.responses[head.message_id]]
        try:
            msg = self._decode(sa, data)
        except IntegrityError:
            return []
        except ParseError as e:
            if kind != "new":
                return []
            note = Notify(getattr(e, "notify", "INVALID_SYNTAX"), getattr(e, "data", b""))
            return self._respond(sa, head, src, [note], f"{e}")
        if msg is None:
            return []
        sa.local, sa.remote = dst, src  # answer from where the request came to (RFC 7296 s2.11, s2.23)
        if kind == "invalid":
            return self._report_invalid_mid(sa, head.message_id)
        if msg.unknown_critical:
            return self._respond(sa, head, src, [Notify("UNSUPPORTED_CRITICAL_PAYLOAD", bytes([msg.unknown_critical[0]]))],
                                 f"unknown critical payload {msg.unknown_critical[0]}")
        crossed = collide.cross(self, sa, msg) if head.exchange == view.CREATE_CHILD_SA else \
            collide.cross_delete(self, sa, msg) if head.exchange == view.INFORMATIONAL else []  # Bugs.collide_rekeys, rekey_on_delete
        if head.exchange == view.IKE_AUTH:
            resp = exchange_init.on_auth_request(self, sa, msg, src)
        elif head.exchange in (view.CREATE_CHILD_SA, view.INFORMATIONAL):
            resp = exchange_child.on_request(self, sa, msg)
        else:
            return self._respond(sa, head, src, [Notify("INVALID_SYNTAX")], f"unexpected exchange {head.exchange}")
        datagrams = self.encode(sa, resp)
        sa.responses.store(head.message_id, datagrams)
        out = [Datagram(d, sa.local, src) for d in datagrams]
        if crossed:  # the peer must meet our request while its own is outstanding: our answer waits for its answer
            collide.hold(self, sa, out, self.clock())
            out = []
        if sa.delete_after_response:
            self.remove_sa(sa, sa.delete_after_response)
        return crossed + out + exchange_child.after_request(self, sa) + self.flush_queue(sa)

    def _respond(self, sa: IkeSa, head: Msg, src: Address, notifies: list[Notify], why: str) -> list[Datagram]:
        """An encrypted response carrying only error notifies (cached like any response)."""
        self.fail(view.exchange_name(head.exchange), IkeError(why, notifies[0].type), False)
        resp = Msg(head.exchange, head.message_id, True, sa.original_initiator, sa.spi_i, sa.spi_r,
                   notifies=notifies, encrypted=True)
        datagrams = self.encode(sa, resp)
        sa.responses.store(head.message_id, datagrams)
        return [Datagram(d, sa.local, src) for d in datagrams]

    def _report_invalid_mid(self, sa: IkeSa, mid: int) -> list[Datagram]:
        """RFC 7296 s3.10.1: INVALID_MESSAGE_ID goes in a new INFORMATIONAL request, rate-limited (once per SA)."""
        if sa.local_spi in self.invalid_mid_reported or sa.state != State.ESTABLISHED:
            return []
        self.invalid_mid_reported.add(sa.local_spi)
        note = Notify("INVALID_MESSAGE_ID", mid.to_bytes(4, "big"))
        return self.send_request(sa, INFORMATIONAL, lambda m: m.notifies.append(note), Pending("info"))
