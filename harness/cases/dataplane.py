"""The data-plane verbs of a Pair: packets the built-in end crafts into a peer's kernel SA, judged by the peer's counters.

A peer's kernel keeps two kinds of counters a case reads (`KernelCounters`): the global XFRM error counters of
/proc/net/xfrm_stat (XfrmInNoStates, XfrmInStateProtoError, XfrmInStateSeqError, ...) and each SA's own
(`ip -s xfrm state`: packets, replay, replay-window, failed). `expect_dropped` sends crafted echo requests through
the case's Child SA (a bad ICV, a chosen sequence number, a wrong SPI: any outer packet a `make(sender)` builds),
then requires each named counter to rise by exactly the number sent and no echo reply to come back; `expect_accepted`
requires the replies. Every crafted packet is excused by the wire check (it is recorded as crafted), every
other packet of the case is still checked.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from harness.errors import LabError, ParseError, PeerFault
from harness.esp import Faults, Sender
from harness.lab.ping import echo_packet
from harness.peers.xfrm import XfrmState, parse_xfrm_stat, parse_xfrm_state
from harness.report.steps import check_step, now_ms

SA_STATS = ("packets", "replay", "replay-window", "failed")  # an SA's own counters (`ip -s xfrm state`)
CRAFTED_IDENT = 0x4950  # the echo identifier of crafted requests ("IP")
Make = Callable[[Sender, bytes], bytes]  # (sender of the Child SA, inner packet) -> the outer packet to send


@dataclass(frozen=True)
class KernelCounters:
    """A peer kernel's IPsec counters at one moment: /proc/net/xfrm_stat by name, and its SAs by (protocol, SPI)."""

    stat: dict[str, int]
    sas: dict[tuple[str, int], XfrmState]

    def sa_value(self, proto: str, spi: int, name: str) -> int:
        """One SA's counter (SA_STATS) now, 0 for an SA the kernel does not hold."""
        st = self.sas.get((proto, spi))
        if st is None:
            return 0
        return (st.current_packets or 0) if name == "packets" else st.stats.get(name, 0)

    def rose(self, before: KernelCounters, inbound: tuple[str, int]) -> dict[str, int]:
        """What rose since before: xfrm_stat names, and the inbound SA's SA_STATS."""
        out = {k: v - before.stat.get(k, 0) for k, v in self.stat.items() if v != before.stat.get(k, 0)}
        for name in SA_STATS:
            d = self.sa_value(*inbound, name) - before.sa_value(*inbound, name)
            if d:
                out[name] = d
        return out


def read_counters(adapter: Any) -> KernelCounters:
    """A peer end's kernel counters in one command (LabError if the node cannot be read): xfrm_stat, its SAs, and the
    IP/ICMP/UDP counters of /proc/net/snmp ("Icmp.OutDestUnreachs", "Udp.InErrors") and snmp6 ("Icmp6OutMsgs")."""
    text = adapter.run(["sh", "-c", "cat /proc/net/xfrm_stat; echo @@; ip -s xfrm state; echo @@; "
                                    "cat /proc/net/snmp /proc/net/snmp6 2>/dev/null"])
    stat_text, _, rest = text.partition("@@\n")
    state_text, _, snmp_text = rest.partition("@@\n")
    stat = {**parse_snmp(snmp_text), **parse_xfrm_stat(stat_text)}
    return KernelCounters(stat, {(s.proto, s.spi): s for s in parse_xfrm_state(state_text)})


def parse_snmp(text: str) -> dict[str, int]:
    """/proc/net/snmp (header and value line pairs: "Udp: InDatagrams ..." / "Udp: 5 ...", read as "Udp.InDatagrams")
    and /proc/net/snmp6 ("Icmp6OutMsgs 3") as one dict; lines of neither shape are ParseError."""
    out: dict[str, int] = {}
    lines = text.splitlines()
    at = [0]
    for line in lines:
        at.append(at[-1] + len(line) + 1)  # byte offset of each line, for errors
    i = 0
    while i < len(lines):
        t = lines[i].split()
        if t and t[0].endswith(":"):
            v = lines[i + 1].split() if i + 1 < len(lines) else []
            if len(v) != len(t) or v[0] != t[0] or not all(x.lstrip("-").isdigit() for x in v[1:]):
                raise ParseError("/proc/net/snmp", lines[i][:60], at[i], "expected a header line and its value line")
            out.update((f"{t[0][:-1]}.{n}", int(x)) for n, x in zip(t[1:], v[1:]))
            i += 2
            continue
        if t:
            if len(t) != 2 or not t[1].lstrip("-").isdigit():
                raise ParseError("/proc/net/snmp6", lines[i][:60], at[i], "expected 'NAME COUNT'")
            out[t[0]] = int(t[1])
        i += 1
    return out


def protect_with(faults: Faults) -> Make:
    """A Make that protects the inner packet with faults (harness.esp.Faults)."""
    return lambda tx, inner: tx.protect(inner, faults)


class DataPlane:
    """The data-plane verbs, mixed into Pair (which provides ends, builtin, wait, child, address, requirement)."""

    _crafted_seq = 0

    @property
    def peer(self) -> Any:
        """The end that is not the built-in stack (LabError unless exactly one end is)."""
        peers = [e for e in self.ends if not e.builtin]  # type: ignore[attr-defined]
        if len(peers) != 1:
            raise LabError(f"pair {self.spec.id}: a data-plane verb needs the built-in end and one peer")  # type: ignore[attr-defined]
        return peers[0]

    def counters(self) -> KernelCounters:
        """The peer's kernel counters now."""
        return read_counters(self.peer.adapter)

    def inbound(self) -> tuple[str, int]:
        """(protocol, SPI) of the peer's inbound SA of the case's Child SA."""
        c = self.child(self.peer)  # type: ignore[attr-defined]
        return c.protocol.lower(), c.spi_in

    def craft(self, make: Make, payload: bytes = b"") -> tuple[int, int]:
        """Send one echo request to the peer, its outer packet built by make(sender, inner); its (ident, seq)."""
        DataPlane._crafted_seq = self._crafted_seq % 0xFFFF + 1
        ident, seq = CRAFTED_IDENT, DataPlane._crafted_seq
        v = self.inner_version()  # type: ignore[attr-defined]
        inner = echo_packet(self.address(self.builtin_end, v), self.address(self.peer, v), ident, seq,  # type: ignore[attr-defined]
                            payload or b"ipsec-interop crafted %d" % seq)
        self.builtin.send_crafted(lambda tx: make(tx, inner))  # type: ignore[attr-defined]
        return ident, seq

    @property
    def builtin_end(self) -> Any:
        """The built-in end (LabError if neither end is)."""
        for e in self.ends:  # type: ignore[attr-defined]
            if e.builtin:
                return e
        raise LabError(f"pair {self.spec.id}: neither end is the built-in stack")  # type: ignore[attr-defined]

    def expect_dropped(self, makes: Sequence[Make], counted: Iterable[str], what: str) -> dict[str, int]:
        """Send one crafted echo request per make; the peer must drop every one (no echo reply), each named counter
        (xfrm_stat names, SA_STATS of its inbound SA) must rise by exactly len(makes), and an echo request after them
        must still be answered. What rose; PeerFault naming what, the counters and the requirement otherwise."""
        counted = tuple(counted)
        inbound = self.inbound()
        before = self.counters()
        t0 = now_ms()
        sent = [self.craft(m) for m in makes]
        want = len(sent)
        state: dict[str, Any] = {}

        def counted_all() -> bool:
            state["rose"] = self.counters().rose(before, inbound)
            return all(state["rose"].get(c, 0) >= want for c in counted) or self._answered(sent)

        try:
            self.wait(counted_all, f"{what}: the peer counts {want} drop(s) in {', '.join(counted)}")  # type: ignore[attr-defined]
        except PeerFault:
            pass  # judged below, with what rose
        rose = state.get("rose", {})
        answered = [s for s in sent if self.builtin.echo_replied(*s)]  # type: ignore[attr-defined]
        ok = not answered and all(rose.get(c, 0) == want for c in counted)
        self.steps.append(check_step(f"crafted batch: {want} echo request(s) with {what} {self.builtin_end.name} -> "  # type: ignore[attr-defined]
                                     f"{self.peer.name}, {len(answered)} answered, counted {', '.join(f'{c} +{rose.get(c, 0)}' for c in counted)}",
                                     ok, t0))
        if answered:
            raise PeerFault(f"{self.peer.name} accepted {len(answered)} of {want} packet(s) with {what}: its echo "
                            f"replies came back (counters that rose: {rose})", self.requirement)  # type: ignore[attr-defined]
        wrong = {c: rose.get(c, 0) for c in counted if rose.get(c, 0) != want}
        if wrong:
            raise PeerFault(f"{self.peer.name} dropped {want} packet(s) with {what} but counted {wrong} in "
                            f"{', '.join(counted)} (each must count {want}; counters that rose: {rose})",
                            self.requirement)  # type: ignore[attr-defined]
        self.expect_accepted([protect_with(Faults())], "a correct packet after them")
        return rose

    def expect_accepted(self, makes: Sequence[Make], what: str) -> None:
        """Send one crafted echo request per make; the peer must answer every one through the Child SA."""
        t0 = now_ms()
        sent = [self.craft(m) for m in makes]
        try:
            self.wait(lambda: self._answered(sent) == len(sent), f"{what}: {len(sent)} echo repl(ies) from {self.peer.name}")  # type: ignore[attr-defined]
            self.steps.append(check_step(f"crafted batch: {len(sent)} echo request(s) with {what} "  # type: ignore[attr-defined]
                                         f"{self.builtin_end.name} -> {self.peer.name}, {len(sent)} answered", True, t0))  # type: ignore[attr-defined]
        except PeerFault as e:
            self.steps.append(check_step(f"crafted batch: {len(sent)} echo request(s) with {what} "  # type: ignore[attr-defined]
                                         f"{self.builtin_end.name} -> {self.peer.name}, {self._answered(sent)} answered",
                                         False, t0))
            raise PeerFault(f"{self.peer.name} answered {self._answered(sent)} of {len(sent)} echo requests with "
                            f"{what}: {e}", self.requirement) from None  # type: ignore[attr-defined]

    def _answered(self, sent: Sequence[tuple[int, int]]) -> int:
        return sum(1 for s in sent if self.builtin.echo_replied(*s))  # type: ignore[attr-defined]
