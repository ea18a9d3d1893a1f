"""The Pair a case gets: two ends on a pooled lab, one Connection, and everything around the case.

A case declares a Connection (`pair.connection(...)`, the initiator's view; the responder loads its mirror)
and calls a few verbs: `establish`, `expect`, `traffic`, `rekey`, `terminate`, `wait`. Each verb that finds
the ends disagreeing with the case raises a PeerFault (FAILED) naming the case's requirement; a fault of
the lab raises LabError (BROKEN). After the case, `finish` unloads both ends, stops the capture, writes
the evidence (capture per segment, keys.json, esp_sa, ikev2_decryption_table, each end's log, SA and
policy state) and runs the strict wire check (harness.tools.wire_check): every ESP/AH packet decrypts or
verifies, every SPI was reported by an end, no sequence number repeats, and the kernels' counters agree
with the wire. The keys written hold every SA that existed during the case: the built-in end's ledger and
the peers' kernel SAs, snapshotted after every verb.
"""
from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from harness.cases.dataplane import DataPlane
from harness.cases.ends import BUILTIN, PairSpec
from harness.cases.rekeying import Rekeying
from harness.cases.table import CaseRow
from harness.errors import (CannotReconfigure, ConfigError, DaemonDied, LabError, NoAnswer, NotEstablished, PeerFault, Refused,
                            Unimplemented)
from harness.ike.events import ProbeSent
from harness.ike.export import IkeSaKeys
from harness.keys import IpsecSaKeys, KeysFile
from harness.peers.base import ChildSaRecord, IkeSaRecord
from harness.peers.connection import Connection, Identity, connection_from_dict, mirrored
from harness.report.steps import Step, check_step, now_ms, wire_exchange_steps

T = TypeVar("T")
CASE = "case"
PSK = "ipsec-interop case PSK 0123456789abcdef"
WAIT = 60.0  # generous bound for every wait (conditions, never sleeps): a loaded 2-core host runs guests slowly
# Child SA errors after which the IKE SA may stand (RFC 7296 s1.2, s2.21.2: only the Child SA is refused)
CHILD_ONLY_ERRORS = ("TS_UNACCEPTABLE", "SINGLE_PAIR_REQUIRED", "INTERNAL_ADDRESS_FAILURE", "FAILED_CP_REQUIRED")
SPARE_HOST = 250  # the host number of the "spare" selector: an address of the segment no node of a lab has
SETTLE = 10.0  # bound for packets still in flight through the guests after ping returns


@dataclass(eq=False)
class End:
    """One end of a pair: its name, lab node, adapter (peer protocol) and runtime node (None for builtin)."""

    name: str
    node: str
    adapter: Any
    runtime_node: Any = None

    @property
    def builtin(self) -> bool:
        """True for the built-in stack."""
        return self.name == BUILTIN

    @property
    def reads(self) -> bool:
        """False for an end that cannot report its SAs (an external device without control.list_sas): cases judge
        it by the built-in end's view, its answers and the wire."""
        return bool(getattr(self.adapter, "reports_state", True))

    @property
    def device(self) -> bool:
        """True for an external device (its adapter fits the case to its profile)."""
        return callable(getattr(self.adapter, "fit", None))


def _woken(end: End) -> int:
    """Agent replies on end's runtime node that came only after a nudge, so far (0 without an agent channel)."""
    return getattr(getattr(end.runtime_node, "channel", None), "woken", 0)


@dataclass
class Evidence:
    """What a case leaves behind: keys seen (by SA), kernel counters, expected traffic, files written."""

    ipsec: dict[tuple[str, int, str], IpsecSaKeys] = field(default_factory=dict)
    ike: dict[bytes, IkeSaKeys] = field(default_factory=dict)
    expected: dict[tuple[str, int, str], int] = field(default_factory=dict)  # SA -> packets at least on the wire
    files: list[Path] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    selectors: set[tuple[tuple[str, ...], tuple[str, ...]]] = field(default_factory=set)  # Child SAs' (local, remote)


def _selector_set(texts: Iterable[str]) -> frozenset[Any]:
    """Selectors as the ends write them ("198.18.0.1/32", "198.18.0.1", "...[icmp]"), as comparable ranges."""
    from harness.ike.ts import TrafficSelector

    return frozenset(TrafficSelector.of(t.strip()) for t in texts)


def _live(children: Iterable[ChildSaRecord]) -> list[ChildSaRecord]:
    """The Child SAs neither rekeyed nor deleted."""
    return [c for c in children if "REKEYED" not in c.state and "DELETED" not in c.state]


class Pair(DataPlane, Rekeying):
    """Two ends of a case on one lab (see module doc)."""

    def __init__(self, spec: PairSpec, lab: Any, ends: dict[str, End], capture: Any, directory: Path,
                 requirement: str = "") -> None:
        self.spec, self.lab, self.capture, self.directory = spec, lab, capture, directory
        self.initiator, self.responder = ends[spec.initiator], ends[spec.responder]
        self.requirement = requirement
        self.conn: Connection | None = None
        self.hosts = False  # traffic between the hosts behind the ends (connection(hosts=True))
        self.evidence = Evidence()
        self.loaded: list[End] = []
        self.steps: list[Step] = []  # packet batches and checks, for the Allure result (harness.report.steps)
        self._events_from = {e.name: len(e.adapter.events) for e in self.ends if e.builtin}  # a pooled end keeps old ones
        self._woken_from = {e.name: _woken(e) for e in self.ends}

    def woken(self) -> dict[str, int]:
        """Per end, the agent replies in this case that came only after a nudge (harness.runtime.agent): a UML guest
        that slept through the request; none for ends without an agent channel."""
        return {e.name: n for e in self.ends if (n := _woken(e) - self._woken_from[e.name])}

    # -- declarations ---------------------------------------------------------------------------------
    @property
    def ends(self) -> tuple[End, End]:
        """(initiator, responder)."""
        return self.initiator, self.responder

    @property
    def builtin(self) -> Any:
        """The built-in end's BuiltinEnd (for its knobs: bugs, faults, config_overrides); LabError if neither end is it."""
        return self.builtin_end.adapter

    def address(self, end: End, version: int = 4) -> str:
        """An end's address on the lab's first data segment."""
        if end.builtin:
            return str(self.lab.tester.address(version=version))
        return self.lab.node(end.node).address(version=version)

    def seen_address(self, end: End, by: End, version: int = 4) -> str:
        """The address `by` meets `end` at: end's own, or, when end sits behind a NAT router that by is not behind
        with it, the router's address on the segment it masquerades onto (RFC 7296 s2.23; NAT is IPv4 only)."""
        mine, theirs = self._segment(end), self._segment(by)
        if mine != theirs and version == 4:
            for node in self.lab.nodes.values():
                segs = {i.segment for i in node.interfaces}
                if node.kind == "nat" and mine in segs and node.masquerade not in (None, mine):
                    return node.address(node.masquerade)
        return self.address(end, version)

    def _mirror(self, conn: Connection) -> Connection:
        """The responder's side of conn: conn mirrored, with the addresses it really has and meets across a NAT."""
        v = self._version_of(conn)
        out = mirrored(conn, role="responder")
        own, peer = self.address(self.responder, v), self.seen_address(self.initiator, self.responder, v)
        if (own, peer) == (conn.remote_addr, conn.local_addr):
            return out
        tunnel = conn.mode == "tunnel"
        return dataclasses.replace(
            out, local_addr=own, remote_addr=peer, local_id=conn.remote_id or Identity(f"ipv{v}", own),
            remote_id=conn.local_id or Identity(f"ipv{v}", conn.local_addr),
            local_ts=conn.remote_ts if tunnel else (), remote_ts=conn.local_selectors() if tunnel else (),
            remote_behind_nat=None if tunnel or peer == conn.local_addr else conn.local_addr)

    def mirror(self, conn: Connection, **fields: Any) -> Connection:
        """The responder's side of conn (what it loads by default), with fields replaced (e.g. its own proposals)."""
        out = self._mirror(conn)
        if not fields:
            return out
        return connection_from_dict({**out.to_dict(), **fields}, f"responder connection ({self.spec.id})")

    def _segment(self, end: End) -> str:
        node = self.lab.node(end.node)
        return node.interface().segment

    def host_behind(self, end: End) -> Any:
        """The lab's host node behind an end (a tunnel gateway), or None: the host whose default route goes via it."""
        for node in self.lab.topology.nodes.values():
            if node.kind == "host" and any(r.to == "default" and r.via == end.node for r in node.routes):
                return self.lab.node(node.name)
        return None

    def lan(self, end: End, version: int = 4) -> str:
        """The subnet of the host behind an end; LabError if the topology has none."""
        host = self.host_behind(end)
        if host is None:
            raise LabError(f"topology {self.lab.topology.name!r}: no host behind {end.name} ({end.node})")
        seg = self.lab.segments[host.interface().segment]
        return str(seg.v4 if version == 4 else seg.v6)

    def connection(self, version: int = 4, hosts: bool = False, **fields: Any) -> Connection:
        """The case's Connection as the initiator sees it: the two ends' addresses, a PSK, and fields; hosts=True:
        a tunnel between the subnets of the hosts behind the two gateways."""
        d: dict[str, Any] = {"name": CASE, "local_addr": self.address(self.initiator, version),
                             "remote_addr": self.seen_address(self.responder, self.initiator, version), "auth": {"psk": PSK}}
        real = self.address(self.responder, version)
        if d["remote_addr"] != real:  # the responder behind a NAT: it still names itself, and offers, by its own address
            d.update(remote_id=real, remote_ts=[f"{real}/32"])
        if hosts:
            d.update(mode="tunnel", local_ts=[self.lan(self.initiator, version)], remote_ts=[self.lan(self.responder, version)])
        d.update(fields)
        self.hosts = hosts
        return connection_from_dict(d, f"case connection ({self.spec.id})")

    def from_row(self, row: CaseRow, version: int = 4, inner: int | None = None) -> Connection:
        """The Connection of a case table row (its selector tokens read from the initiator's side, in the inner IP
        version if given: a 4-in-6 or 6-in-4 tunnel's selectors are of the other family than its outer addresses)."""
        return self.connection(version, **self._placed(row.connection, self.initiator, inner or version))

    def selector(self, token: str, end: End, version: int = 4) -> str:
        """A table row's selector token from end's side: own (its address as a host prefix), other (the other
        end's), segment (the data segment of both), spare (a host of that segment that no node has), each
        optionally with a [PROTOCOL] or [PROTOCOL/PORT] suffix that is kept ("own[udp/40001]")."""
        if token.endswith("]") and "[" in token:
            base, _, suffix = token.partition("[")
            return f"{self.selector(base, end, version)}[{suffix}"
        other = self.responder if end is self.initiator else self.initiator
        seg = self.lab.segments[self._segment(end)]
        net = seg.v4 if version == 4 else seg.v6
        if token == "segment":
            return str(net)
        if token == "spare":
            spare = net[SPARE_HOST]
            if any(str(spare) in (self.address(e, version), self.seen_address(e, end, version)) for e in self.ends):
                raise LabError(f"pair {self.spec.id}: the spare selector {spare} is an end's address")
            return f"{spare}/{net.max_prefixlen}"
        addr = self.address(end, version) if token == "own" else self.seen_address(other, end, version)
        return f"{addr}/{32 if version == 4 else 128}"

    def _placed(self, fields: dict[str, Any], end: End, version: int) -> dict[str, Any]:
        """fields with the selector tokens of local_ts/remote_ts replaced by end's selectors."""
        return {**fields, **{k: [self.selector(t, end, version) for t in fields[k]]
                             for k in ("local_ts", "remote_ts") if k in fields}}

    # -- verbs ----------------------------------------------------------------------------------------
    def load(self, conn: Connection, responder: Connection | None = None) -> None:
        """Load conn at the initiator and its mirror (or `responder`) at the responder, waiting for nothing;
        Unimplemented first if an end's own algorithm list lacks every proposal of the case."""
        self.conn = conn
        if responder is None:
            responder = self._mirror(conn)
        conn, responder = self._fit(conn, responder)
        self.conn = conn
        self.require_algorithms(conn)
        for end, c in ((self.responder, responder),
                       (self.initiator, dataclasses.replace(conn, role="responder"))):
            t0 = time.perf_counter()
            end.adapter.load(c)
            self.loaded.append(end)
            self._time("load", t0)

    def _fit(self, conn: Connection, responder: Connection) -> tuple[Connection, Connection]:
        """(initiator's, responder's) connections with an external device's end fitted to its profile: the built-in
        end's rewritten to the device's identities and credentials; CannotReconfigure (a skip naming the profile key)
        if the device as declared cannot be the case's side."""
        for end in self.ends:
            if end.device:
                if end is self.responder:
                    return end.adapter.fit(responder, conn, False), responder
                return conn, end.adapter.fit(conn, responder, True)
        return conn, responder

    def needs(self, end: End, verb: str) -> None:
        """CannotReconfigure (a skip naming the profile key) if the case needs an end to `verb` (rekey, terminate, ...)
        on command and it cannot (an external device without that control hook); for a check before a background
        command whose failure would otherwise go unseen."""
        why = getattr(end.adapter, "cannot", lambda v: None)(verb)
        if why:
            raise CannotReconfigure(why)

    def require_algorithms(self, conn: Connection) -> None:
        """Unimplemented naming the end, the transforms and the list read, if an end lists no proposal of conn
        in full (for the IKE SA or the Child SA); an end that cannot say (an external device) is not judged here."""
        for end in self.ends:
            try:
                algs = end.adapter.algorithms()
            except CannotReconfigure:
                continue
            for offer, child, what in ((conn.ike_offer, False, "IKE SA"), (conn.child_offer, True, "Child SA")):
                gaps = [algs.missing(p, child) for p in offer]
                if gaps and all(gaps):
                    raise Unimplemented(f"{end.name} does not list {', '.join(gaps[0])} for the {what} "
                                        f"(its own list: {algs.source})")

    def establish(self, conn: Connection, responder: Connection | None = None, timeout: float = WAIT) -> IkeSaRecord:
        """Load both ends and negotiate; both must report the same Child SA (SPIs crossed). FAILED otherwise."""
        self.load(conn, responder)
        rec = self._negotiate(lambda: self.initiator.adapter.initiate(conn.name, timeout=timeout))
        self.wait(self._established, "both ends report the same Child SA, and each peer's kernel holds both of its SAs")
        self._note_selectors()
        return rec

    def establish_childless(self, conn: Connection, responder: Connection | None = None,
                            timeout: float = WAIT) -> IkeSaRecord:
        """Load both ends and negotiate the IKE SA without a Child SA (RFC 6023, the initiator's initiate_ike): both
        must report the same IKE SA, neither a Child SA, and no peer's kernel an ESP/AH SA. FAILED otherwise."""
        self.load(conn, responder)
        rec = self._negotiate(lambda: self.initiator.adapter.initiate_ike(conn.name, timeout=timeout))
        self.wait(self._childless, "both ends report the same IKE SA and no Child SA")
        for end in self.ends:
            if not end.builtin and not end.device and (left := [s for s in end.adapter.xfrm_state() if s.proto in ("esp", "ah")]):
                raise PeerFault(f"{end.name}: kernel SAs after a childless IKE_AUTH: "
                                f"{[f'{s.proto} 0x{s.spi:08x}' for s in left]}", self.requirement)
        return rec

    def create_child(self, by: str = "initiator", timeout: float = WAIT) -> None:
        """The case's Child SA made on the standing IKE SA by one end (CREATE_CHILD_SA, RFC 7296 s1.3.1): both ends
        must report it with SPIs crossed, on the same IKE SA, and each peer's kernel both of its SAs."""
        end = self.initiator if by == "initiator" else self.responder
        ike = {e.name: {(s.spi_i, s.spi_r, s.serial) for s in self.ike_sas(e)} for e in self.ends if e.reads}
        self._negotiate(lambda: end.adapter.create_child(self._conn().name, timeout=timeout))
        self.wait(self._established, f"CREATE_CHILD_SA by {end.name}: both ends report the same Child SA")
        self._note_selectors()
        for e in (e for e in self.ends if e.reads):
            now = {(s.spi_i, s.spi_r, s.serial) for s in self.ike_sas(e)}
            if now != ike[e.name]:
                raise PeerFault(f"{e.name}: the Child SA came with another IKE SA ({now}, before {ike[e.name]})",
                                self.requirement)
        self.snapshot()

    def _childless(self) -> bool:
        """Each end reports one IKE SA of the case and no live Child SA, with the same SPIs where both report them
        (Libreswan's whack lists none)."""
        sas = [self.ike_sas(e) for e in self.ends if e.reads]
        if len(sas) < 2:
            return len(sas[0]) == 1 and not _live(sas[0][0].children)
        if not all(len(s) == 1 and not _live(s[0].children) for s in sas):
            return False
        spis = [(s[0].spi_i, s[0].spi_r) for s in sas]
        return None in spis[0] or None in spis[1] or spis[0] == spis[1]

    def expect(self, row: CaseRow, conn: Connection | None = None) -> None:
        """Run a table row: established, or refused with its notify and no IKE SA left on either end."""
        conn = conn or self.from_row(row)
        responder = self.mirror(conn, **self._placed(row.responder, self.responder, self._version_of(conn))) \
            if row.responder else None
        if row.expect.outcome == "established":
            self.establish(conn, responder)
            if row.selectors:
                self.check_selectors(row.selectors, str(row.requirement))
            return
        try:
            self.establish(conn, responder)
        except Refused as e:
            if e.notify != row.expect.detail:
                raise PeerFault(f"refused with {e.notify}, the case requires {row.expect.detail}", str(row.requirement),
                                e.notify) from None
        except PeerFault as e:
            raise PeerFault(f"no {row.expect.detail} seen: {e}", str(row.requirement)) from None
        else:
            raise PeerFault(f"established, the case requires a refusal with {row.expect.detail}", str(row.requirement))
        self.after_refusal(row.expect.detail, child_only=row.expect.detail in CHILD_ONLY_ERRORS)

    def after_refusal(self, what: str, child_only: bool) -> None:
        """After a refusal (what): no Child SA left on either end, and no IKE SA unless child_only, where the
        IKE SA may stand (RFC 7296 s2.21.2) and is then deleted so that the next case starts clean."""
        if not child_only:
            self.wait(lambda: not any(self.ike_sas(e) for e in self.ends if e.reads),
                      f"no IKE SA left on either end after {what}")
            return
        self.wait(lambda: not any(_live(c for s in self.ike_sas(e) for c in s.children) for e in self.ends if e.reads),
                  f"no Child SA on either end after {what}")
        if any(self.ike_sas(e) for e in self.ends if e.reads):
            self.terminate()

    def check_selectors(self, tokens: dict[str, tuple[str, ...]], requirement: str) -> None:
        """Both ends hold the Child SA with the selectors tokens name (the initiator's side; the responder's mirror);
        PeerFault naming the end and what it holds (RFC 7296 s2.9)."""
        v = self._version()
        want = {k: _selector_set(self.selector(t, self.initiator, v) for t in tokens.get(k, ())) for k in tokens}
        for end in (e for e in self.ends if e.reads):
            c = self.child(end)
            held = {"local_ts": _selector_set(c.local_ts), "remote_ts": _selector_set(c.remote_ts)}
            if end is self.responder:
                held = {"local_ts": held["remote_ts"], "remote_ts": held["local_ts"]}
            for k, w in want.items():
                if held[k] != w:
                    side = k if end is self.initiator else {"local_ts": "remote_ts", "remote_ts": "local_ts"}[k]
                    raise PeerFault(f"{end.name}'s Child SA has {side} {sorted(map(str, held[k]))}, the case requires "
                                    f"{sorted(map(str, w))}", requirement)

    def traffic(self, count: int = 3) -> None:
        """Echo requests each way through the Child SA (between the hosts behind the ends for a hosts connection);
        both ends' counters and (after the case) the wire must show them. A packet still in flight through a
        loaded guest when ping returns is waited for (SETTLE), never judged lost at once."""
        one_way = any(e.device for e in self.ends)  # the harness cannot make an external device send echo requests
        for src, dst in ((self.initiator, self.responder), (self.responder, self.initiator)):
            if src.device:
                continue  # its answers to the built-in end's echo requests are its direction through the SA
            before = self.child(dst).packets_in if dst.reads else 0
            t0 = now_ms()
            got = self._ping(src, dst, count)
            proto = self._conn().protocol.upper()
            if src.builtin and not self.hosts:
                self.steps.append(check_step(f"{proto} batch: {count} echo requests {src.name} -> {dst.name}, {got} "
                                             f"replies decrypted", got >= count, t0))
                if got < count:
                    counted = f"its inbound SA counted {self.child(dst).packets_in - before}" if dst.reads else \
                        "it cannot be read: control.list_sas is not set"
                    raise PeerFault(f"{dst.name} answered {got} of {count} echo requests through the Child SA "
                                    f"({counted})", self.requirement)
                continue
            after = self._settle(dst, lambda c: c.packets_in - before >= count)
            hosts = "the host behind " if self.hosts else ""
            self.steps.append(check_step(f"{proto} batch: {count} echo requests {hosts}{src.name} -> {hosts}{dst.name}, "
                                         f"{dst.name}'s inbound SA {after.spi_in:08x} counted {after.packets_in - before}",
                                         after.packets_in - before >= count, t0))
            if after.packets_in - before < count:
                raise PeerFault(f"{dst.name}'s inbound SA 0x{after.spi_in:08x} counted {after.packets_in - before} of "
                                f"{count} echo requests from {'the host behind ' if self.hosts else ''}{src.name} "
                                f"within {SETTLE:.0f} s", self.requirement)
        n = count if one_way else 2 * count
        for end in self.ends:
            if not end.reads:
                continue
            c = self._settle(end, lambda c: c.packets_out >= n and c.packets_in >= n)
            proto = c.protocol.lower()
            dst = self.address(self.responder if end is self.initiator else self.initiator, self._version())
            key = (proto, c.spi_out, dst)
            self.evidence.expected[key] = self.evidence.expected.get(key, 0) + n
            self.steps.append(check_step(f"check {end.name}'s Child SA counters: in {c.packets_in}, out {c.packets_out} "
                                         f"(at least {n} each way)", c.packets_out >= n and c.packets_in >= n))
            if c.packets_out < n or c.packets_in < n:
                raise PeerFault(f"{end.name}: Child SA counters in {c.packets_in}, out {c.packets_out}, expected "
                                f"at least {n} each way", self.requirement)

    def rekey(self, what: str = "child", by: str | None = "initiator") -> None:
        """Rekey the Child SA or the IKE SA from one end (by None: wait for an end's own rekey, e.g. by its lifetimes);
        both ends must move to new, agreeing SPIs."""
        end = self.initiator if by == "initiator" else self.responder
        before = {e.name: self._state(e) for e in self.ends if e.reads}
        marks = {e.name: len(self.events(e)) for e in self.ends}
        if by is not None:
            end.adapter.rekey(self._conn().name, what)

        def moved() -> bool:
            self.refused_rekey(marks)  # Rekeying: the built-in end refused the other end's request
            now = {e.name: self._state(e) for e in self.ends if e.reads}
            if None in now.values():
                return False
            index = 1 if what == "child" else 0
            return all(now[n][index] != before[n][index] for n in now) and self._agreed_child()  # type: ignore[index]

        self.wait(moved, f"{what} SA rekey by {end.name if by else 'an end on its own'}: new SPIs on both ends")
        self._note_selectors()
        self.snapshot()

    def terminate(self, by: str = "initiator") -> None:
        """Delete the IKE SA from one end; the other end must drop its SAs."""
        end = self.initiator if by == "initiator" else self.responder
        before = {c.spi_in for e in self.ends if e.reads for s in self.ike_sas(e) for c in s.children}
        try:
            end.adapter.terminate(self._conn().name)
        except NoAnswer as e:  # the deleting end quotes its own log: add the other end's, and what each holds now
            held = "; ".join(f"{x.name} holds {[f'{s.spi_i or 0:016x}_i {s.spi_r or 0:016x}_r' for s in self.ike_sas(x)]}"
                             for x in self.ends if x.reads)
            raise NoAnswer(f"{e}\n--- IKE SAs now: {held}{self._tails(x for x in self.ends if x is not end)}",
                           self.requirement) from None

        def dropped() -> bool:  # an IKE SA the other end makes anew (Libreswan revives a connection it initiated) is not
            return not any(not s.children or any(c.spi_in in before for c in s.children)  # the one deleted
                           for e in self.ends if e.reads for s in self.ike_sas(e))

        self.wait(dropped, f"both ends drop the IKE SA {end.name} deleted")

    def wait(self, cond: Callable[[], T], what: str, timeout: float = WAIT, interval: float = 0.2) -> T:
        """Poll cond until it is true; NoAnswer naming what, with both ends' log tails, after timeout."""
        deadline = time.monotonic() + timeout
        while True:
            got = cond()
            if got:
                return got
            if time.monotonic() > deadline:
                raise NoAnswer(f"{what}: not within {timeout:.0f} s{self._tails(self.ends)}", self.requirement)
            time.sleep(interval)

    # -- reading the ends -----------------------------------------------------------------------------
    def events(self, end: End) -> list[Any]:
        """The built-in end's IKE events of this case (none for a peer end)."""
        return list(end.adapter.events[self._events_from[end.name]:]) if end.builtin else []

    def ike_sas(self, end: End) -> list[IkeSaRecord]:
        """The end's established IKE SAs of the case's connection."""
        return [s for s in end.adapter.list_sas() if s.established and (self.conn is None or s.name == self.conn.name)]

    def snapshot(self) -> list[Any]:
        """Keep the keys of every SA the ends hold now (so SAs deleted later still open in the capture); the
        ends' per-SA packet counters read on the way (one kernel read per peer end)."""
        from harness.peers.base import sa_keys

        counters: list[Any] = []
        for end in self.ends:
            if end.builtin:
                keys = end.adapter.keys()
                counters += self._builtin_counters(end)
            elif end.device:
                continue  # a device hands out no keys and no kernel counters: the built-in end's are the evidence
            else:
                states = end.adapter.xfrm_state()
                keys = KeysFile(sa_keys(states), {})
                counters += self._kernel_counters(end, states)
            for k in keys.ipsec_sas:
                self.evidence.ipsec.setdefault((k.protocol, k.spi, k.dst), k)
            for k in keys.sections.get("ike_sas", []):
                self.evidence.ike.setdefault(k.spi_i + k.spi_r, k)
        return counters

    def _note_selectors(self) -> None:
        """Keep the selectors of every Child SA the built-in end (else the initiator) holds now, for the wire check's
        clear-text check (harness.tools.cleartext)."""
        end = next((e for e in self.ends if e.builtin), self.initiator)
        for s in self.ike_sas(end):
            for c in _live(s.children):
                self.evidence.selectors.add((tuple(c.local_ts), tuple(c.remote_ts)))

    def _conn(self) -> Connection:
        if self.conn is None:
            raise LabError("pair: no connection loaded yet (call establish first)")
        return self.conn

    def _version(self) -> int:
        return self._version_of(self._conn())

    @staticmethod
    def _version_of(conn: Connection) -> int:
        return 6 if ":" in conn.local_addr else 4

    def inner_version(self) -> int:
        """The IP version of the traffic the Child SA carries: its selectors' (a 4-in-6 or 6-in-4 tunnel's differ from
        the outer addresses')."""
        return 6 if ":" in self._conn().local_selectors()[0] else 4

    def child(self, end: End) -> ChildSaRecord:
        """The end's live Child SA of the case (the busiest if several); PeerFault if it holds none."""
        children = _live(c for s in self.ike_sas(end) for c in s.children)
        if not children:
            raise PeerFault(f"{end.name} holds no Child SA of the case", self.requirement)
        return max(children, key=lambda c: (c.packets_out, c.spi_in)) if len(children) > 1 else children[0]

    def _settle(self, end: End, ok: Callable[[ChildSaRecord], bool]) -> ChildSaRecord:
        """The end's Child SA once ok holds, or as it is after SETTLE seconds (the caller judges it)."""
        deadline = time.monotonic() + SETTLE
        while not ok(c := self.child(end)) and time.monotonic() < deadline:
            time.sleep(0.05)
        return c

    def _state(self, end: End, sas: list[IkeSaRecord] | None = None) -> tuple[tuple[Any, ...], tuple[int, int]] | None:
        sas = self.ike_sas(end) if sas is None else sas
        if len(sas) != 1 or not sas[0].children:
            return None
        live = _live(sas[0].children)
        if len(live) != 1:
            return None
        return (sas[0].spi_i, sas[0].spi_r, sas[0].serial), (live[0].spi_in, live[0].spi_out)

    def _agreed_child(self, sas: dict[str, list[IkeSaRecord]] | None = None) -> bool:
        """Both ends hold one Child SA with SPIs crossed (an end that cannot be read: the other holds one)."""
        a, b = (self._state(e, None if sas is None else sas[e.name]) if e.reads else () for e in self.ends)
        if a == () or b == ():
            return bool(a or b)
        return a is not None and b is not None and a[1] == (b[1][1], b[1][0])

    def _established(self) -> bool:
        """Both ends report the same Child SA and each peer's kernel holds both of its SAs (the daemon may report
        it a moment before the kernel has both; the built-in end's SAs exist as soon as it reports them); one
        read of each end."""
        sas = {e.name: self.ike_sas(e) if e.reads else [] for e in self.ends}
        return self._agreed_child(sas) and all(
            e.builtin or not getattr(e.adapter, "kernel_keys", True) or all(any(k.endswith("_in") for k in c.keys) and any(k.endswith("_out") for k in c.keys)
                             for c in _live(c for s in sas[e.name] for c in s.children))
            for e in self.ends)

    def _ping(self, src: End, dst: End, count: int) -> int:
        v = self.inner_version()
        addr = self.address(dst, v)
        argv = ["ping", f"-{v}", "-n", "-c", str(count), "-i", "0.05", "-W", "5"]  # root in the guest: 50 ms is allowed
        if self.hosts:  # host to host through the two gateways
            to = self.host_behind(dst).address(version=v)
            self.lab.ping(self.host_behind(src).name, to, count=count, timeout=2.0)  # its answer is not the verdict
            return count
        if src.builtin:
            return int(src.adapter.ping(addr, count, src=self.address(src, v)))
        src.runtime_node.exec([*argv, addr], timeout=15 + count)  # its exit status is not the verdict: counters are
        return count

    def _tails(self, ends: Iterable[End]) -> str:
        """The ends' log tails, for an error."""
        return "".join(f"\n--- {e.name} log tail ---\n{self._log(e)[-2000:]}" for e in ends)

    def _log(self, end: End) -> str:
        try:
            return str(end.adapter.logs())
        except LabError as e:
            return f"(could not read: {e})"

    def _time(self, what: str, t0: float) -> None:
        self.evidence.timings[what] = self.evidence.timings.get(what, 0.0) + time.perf_counter() - t0

    def _with_requirement(self, message: str) -> str:
        return f"{self.requirement}: {message}" if self.requirement else message

    def _negotiate(self, call: Callable[[], T]) -> T:
        """call (an end's initiate, initiate_ike or create_child), its failure graded: NotEstablished by the built-in
        responder's own refusal (_refusal), Refused/NoAnswer with the case's requirement; a snapshot either way."""
        try:
            return call()
        except NotEstablished as e:
            raise self._refusal(e) from None
        except (Refused, NoAnswer) as e:
            e.args = (self._with_requirement(str(e)),)
            raise
        finally:
            self.snapshot()

    def _refusal(self, e: NotEstablished) -> PeerFault:
        """A peer initiator that did not establish: the built-in responder's own refusal names the notify."""
        for end in self.ends:
            if end.builtin and end is self.responder:
                failed = [x for x in self.events(end) if type(x).__name__ == "ExchangeFailed"]
                if failed:
                    f = failed[-1]
                    side = "received from" if f.received else "sent to"
                    return Refused(f"{f.exchange}: the built-in responder {side} {self.initiator.name} {f.notify}: "
                                   f"{f.message}", self.requirement, f.notify)
            if end.builtin and end is self.responder and not e.notify:
                return NotEstablished(f"{e}\n--- the built-in responder: {self._heard(end)}", self.requirement)
        return (Refused if e.notify else NotEstablished)(str(e), self.requirement, e.notify)

    def _heard(self, end: End) -> str:
        """What the built-in end received and did in this case, for an error that must tell a datagram that never came
        from one it left unanswered."""
        driver = end.adapter.driver
        events = [f"{type(x).__name__}({getattr(x, 'exchange', '')})" for x in self.events(end)][-12:]
        return (f"{driver.received if driver else 'no driver:'} IKE datagrams received since it loaded the case, "
                f"{driver.sent if driver else 0} sent; its events this case: {', '.join(events) or 'none'}")

    # -- after the case -------------------------------------------------------------------------------
    def finish(self, failed: bool, all_evidence: bool = False) -> list[Path]:
        """Unload, stop the capture, write the evidence, run the wire check; the files. PeerFault if the wire fails."""
        t0 = time.perf_counter()
        counters: list[Any] = []
        died: DaemonDied | None = None  # a peer's daemon gone since the case's last command: FAILED, after the evidence
        try:
            counters = self.snapshot()
        except DaemonDied as e:
            died = e
        except LabError:
            if not failed:
                raise
        diagnostics = self._diagnostics() if failed or died or all_evidence else []
        self._time("snapshot", t0)
        t0 = time.perf_counter()
        held = any(c.end != BUILTIN for c in counters) or failed
        try:
            self._unload(held)
        except DaemonDied as e:
            died = died or e
        except LabError:
            if not failed:
                raise
        self._time("unload", t0)
        t0 = time.perf_counter()
        self.capture.stop()
        keys = KeysFile(list(self.evidence.ipsec.values()), {"ike_sas": list(self.evidence.ike.values())})
        files = [*self.capture.files.values(), *self._write_keys(keys), *diagnostics]
        self._time("capture", t0)
        t0 = time.perf_counter()
        from harness.tools.wire_check import check_wire

        bent = [d for e in self.ends if e.builtin for ev in self.events(e) if isinstance(ev, ProbeSent) for d in ev.datagrams]
        crafted = [p for e in self.ends if e.builtin for p in e.adapter.crafted]
        from harness.ike.ts import TrafficSelector

        selectors = [(tuple(TrafficSelector.of(t) for t in a), tuple(TrafficSelector.of(t) for t in b))
                     for a, b in self.evidence.selectors]
        wire_t0 = now_ms()
        report = check_wire(dict(self.capture.files), keys, counters, self.directory, bent, crafted, selectors)
        files += list(report.decrypted.values())
        wire = self.directory / "wire.json"
        wire.write_text(json.dumps({"problems": report.problems, "counts": report.counts,
                                    "per_sa": {f"{p} 0x{s:08x} {d}": n for (p, s, d), n in report.per_sa.items()}},
                                   indent=1) + "\n")
        files.append(wire)
        self._time("wire_check", t0)
        self.evidence.files = files
        problems = list(report.problems)
        for sa, n in self.evidence.expected.items():
            if report.per_sa.get(sa, 0) < n:
                problems.append(f"{sa[0].upper()} SPI 0x{sa[1]:08x} to {sa[2]}: {report.per_sa.get(sa, 0)} packets on "
                                f"the wire, the case's traffic needs at least {n}")
        if not any(e.builtin for e in self.ends):  # no built-in end's events to tell the exchanges: the wire does
            self.steps += wire_exchange_steps(report.ike, self._names_by_address())
        self.steps.append(check_step(f"wire check: {len(problems)} problem(s)" + (f", first: {problems[0][:200]}" if problems else ""),
                                     not problems, wire_t0, parameters=[(k, str(n)) for k, n in report.counts.items() if n]))
        if died and not failed:
            raise died
        if problems and not failed:
            shown = "\n".join(problems[:20])
            raise PeerFault(f"wire check: {len(problems)} problem(s) in {self.directory}:\n{shown}",
                            self.requirement or "RFC 4303 s3.4.4 MUST")
        return files

    def _names_by_address(self) -> dict[str, str]:
        """Every lab address (IPv4 and IPv6) and the end, or lab node such as a NAT router, that holds it."""
        ends = {e.node: e.name for e in self.ends}
        return {str(a.ip): ends.get(node.name, node.name) for node in self.lab.nodes.values()
                for i in node.interfaces for a in (i.v4, i.v6)}

    def _unload(self, held: bool = True) -> None:
        """Unload both ends and make sure the peers hold no SA of the case (the next case on these pooled peers
        starts clean): where one stays (held: the last snapshot saw kernel SAs), terminate it and wait.
        LabError (BROKEN) naming what stayed."""
        name = self._conn().name if self.conn else CASE
        for end in dict.fromkeys(reversed(self.loaded)):
            end.adapter.unload(name)
        peers = [e for e in self.ends if not e.builtin and not e.device]  # a device: the built-in end deleted its SAs
        if not held:
            return
        deadline, asked = time.monotonic() + WAIT, 0.0
        while left := {e.name: states for e in peers if (states := e.adapter.xfrm_state())}:
            if time.monotonic() > deadline:
                shown = {n: [f"{s.proto} 0x{s.spi:08x}" for s in states] for n, states in left.items()}
                raise LabError(f"pair {self.spec.id}: SAs left after unload: {shown}")
            if time.monotonic() - asked < 5.0:  # a terminate returns before its Delete is answered: ask again only after a while
                time.sleep(0.2)
                continue
            asked = time.monotonic()
            for e in peers:
                if e.name in left:
                    try:
                        e.adapter.terminate(name)
                    except (LabError, PeerFault):
                        pass  # nothing by that name any more: the kernel's states are what is left to wait for
            time.sleep(0.2)

    def _builtin_counters(self, end: End) -> list[Any]:
        """The built-in end's per-SA counters: packets its senders sent, packets its receivers accepted."""
        from harness.tools.wire_check import SaCounter

        out = []
        for data in list(end.adapter.children.values()):
            tx, rx = data.sender.sa, data.receiver.sa
            out.append(SaCounter(tx.protocol, tx.spi, tx.dst, data.sender.next_seq - 1 - data.crafted_seqs, "out", end.name))
            out.append(SaCounter(rx.protocol, rx.spi, rx.dst, data.receiver.accepted, "in", end.name))
        return out

    def _kernel_counters(self, end: End, states: list[Any]) -> list[Any]:
        """A peer end's per-SA counters from its kernel's xfrm states."""
        from harness.tools.wire_check import SaCounter

        mine = {self.address(end, 4), self.address(end, 6)}
        return [SaCounter(st.proto, st.spi, st.dst, st.current_packets, "out" if st.src in mine else "in", end.name)
                for st in states if st.proto in ("esp", "ah") and st.current_packets is not None]

    def _write_keys(self, keys: KeysFile) -> list[Path]:
        """keys.json and esp_sa (harness.lab.capture.write_keys), and the ikev2_decryption_table, beside the capture."""
        from harness.lab.capture import write_keys

        self.directory.mkdir(parents=True, exist_ok=True)
        out = [write_keys(self.directory, keys)]
        if keys.ipsec_sas:
            out.append(self.directory / "esp_sa")
        ike_lines = []
        for k in keys.sections.get("ike_sas", []):
            try:
                ike_lines.append(k.wireshark_line())
            except ConfigError:  # a transform Wireshark's table cannot name: keys.json still has it
                continue
        if ike_lines:
            (self.directory / "ikev2_decryption_table").write_text("\n".join(ike_lines) + "\n")
            out.append(self.directory / "ikev2_decryption_table")
        return out

    def _diagnostics(self) -> list[Path]:
        """Each end's log and SA/policy state beside the capture."""
        self.directory.mkdir(parents=True, exist_ok=True)
        out = []
        for end in self.ends:
            log = self.directory / f"{end.name}.log"
            log.write_text(self._log(end))
            out.append(log)
            state = self.directory / f"{end.name}.sas.txt"
            try:
                lines = [repr(s) for s in end.adapter.list_sas()]
                if end.runtime_node is not None:
                    lines += [end.runtime_node.exec(argv, timeout=10).stdout for argv in
                              (["ip", "-s", "xfrm", "state"], ["ip", "-s", "xfrm", "policy"])]
                state.write_text("\n".join(lines) + "\n")
            except (LabError, DaemonDied) as e:
                state.write_text(f"could not read: {e}\n")
            out.append(state)
            if end.runtime_node is not None:  # the guest kernel's own messages (a stalled device, a NETDEV WATCHDOG)
                kernel = self.directory / f"{end.name}.dmesg.txt"
                try:
                    kernel.write_text(end.runtime_node.exec(["dmesg"], timeout=10).stdout[-20000:])
                except LabError as e:
                    kernel.write_text(f"could not read: {e}\n")
                out.append(kernel)
        return out
