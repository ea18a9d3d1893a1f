"""The rekey verbs of a Pair (RFC 7296 s1.3.2, s1.3.3, s2.8): a stream across the rekey, and the old SAs gone.

`stream()` runs an EchoStream (harness.cases.stream) from the built-in end while its block runs: it waits for the
first answer before the block (so traffic flows through the old SA), and after it for an answer through the new
Child SA; then every request must have been answered, through whichever SA (no packet lost across the switch).
`replace(what, by)` is `rekey` plus what a replacement must leave: the old Child SA deleted at both ends (gone,
or DELETED, from each daemon's list) and each peer's kernel sending on it no more (its outbound SA gone; strongSwan
keeps the old inbound SA installed for delete_rekeyed_delay, 5 s by default, to take packets still in flight: that
is allowed), the old IKE SA gone from both ends, and after an IKE SA rekey the Child SA on the new IKE SA with the
SPIs it had. The counts and the SAs each request and answer went through are written to stream.json.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from harness.cases.stream import EchoStream
from harness.errors import NoAnswer, PeerFault, Refused, UnsupportedFeature
from harness.ike.events import ExchangeFailed, IkeSaEstablished
from harness.report.steps import check_step, now_ms

STREAM_FILE = "stream.json"


class StreamLost(PeerFault):
    """Echo requests of a stream were not answered (the count says which, and which could not be sent at all)."""

    def __init__(self, count: Any, message: str, requirement: str = "") -> None:
        super().__init__(message, requirement)
        self.count = count
SETTLE = 10.0  # bound for a round trip through SAs both ends already hold (as Pair's SETTLE for packets in flight)


class Rekeying:
    """The rekey verbs, mixed into Pair (which provides ends, builtin_end, child, rekey, wait, evidence)."""

    @contextmanager
    def stream(self) -> Iterator[EchoStream]:
        """Echo requests every 50 ms from the built-in end to the other end while the block runs; PeerFault after it
        unless every one was answered (the lost sequence numbers and the SAs they went through named)."""
        me = self.builtin_end  # type: ignore[attr-defined]
        other = self.responder if me is self.initiator else self.initiator  # type: ignore[attr-defined]
        s = EchoStream(self.builtin, self.address(other, self._version()))  # type: ignore[attr-defined]
        t0 = now_ms()
        s.start()
        proto = self.child(me).protocol.lower()  # type: ignore[attr-defined]
        try:
            self.wait(lambda: s.answered().answered, f"the first echo reply of the stream from {other.name}")  # type: ignore[attr-defined]
            old = self.child(me)  # type: ignore[attr-defined]
            yield s
            after = len(s.count.sent)  # requests are numbered 1..n
            self.wait(lambda: self._carried(s, old, after), "an echo request and its reply through the new SAs",  # type: ignore[attr-defined]
                      timeout=SETTLE)  # the new SAs stand on both ends already (replace): one round trip is ms
        finally:
            count = s.stop()
        try:
            self.wait(lambda: not s.answered().lost, "every echo request of the stream answered",  # type: ignore[attr-defined]
                      timeout=SETTLE)  # the last answers still in flight; a lost one never comes
        except NoAnswer:
            pass  # judged below, with the count
        self._note_stream(s, proto)
        self.steps.append(check_step(f"{proto.upper()} stream: {len(count.sent)} echo requests {me.name} -> {other.name} every "
                                     f"{s.interval * 1000:.0f} ms, {len(count.answered)} answered, {len(count.lost)} lost",
                                     not count.lost, t0, parameters=[(f"{k} via SPI {spi}", str(n)) for k, by in count.by_sa().items() for spi, n in by.items()]))  # type: ignore[attr-defined]
        if count.lost:
            raise StreamLost(count, f"{other.name} answered {len(count.answered)} of {len(count.sent)} echo requests sent every "
                            f"{s.interval * 1000:.0f} ms across the rekey; lost: "
                            f"{[(q, f'0x{count.sent[q]:08x}') for q in count.lost][:20]} (sequence number, outbound SPI);"
                            f" through each SA: {count.by_sa()}", self.requirement)  # type: ignore[attr-defined]

    def _carried(self, s: EchoStream, old: Any, after: int) -> bool:
        """True once a request of the stream and its answer went through SAs other than the old Child SA's (after an
        IKE SA rekey, which keeps the Child SA: once a request sent after the first `after` was answered)."""
        now = self.child(self.builtin_end)  # type: ignore[attr-defined]
        answered = s.answered().answered
        if (now.spi_in, now.spi_out) == (old.spi_in, old.spi_out):
            return any(q > after for q in answered)
        return any(s.count.sent[q] != old.spi_out and a != old.spi_in for q, a in answered.items())

    def _note_stream(self, s: EchoStream, proto: str) -> None:
        """stream.json beside the capture, and the stream's requests as packets each outbound SA (of protocol proto, esp
        or ah: the Child SA may be gone by now) must show."""
        me = self.builtin_end  # type: ignore[attr-defined]
        other = self.responder if me is self.initiator else self.initiator  # type: ignore[attr-defined]
        dst = self.address(other, self._version())  # type: ignore[attr-defined]
        for spi, n in s.count.by_sa()["sent"].items():
            if int(spi, 16) == 0:
                continue  # not sent: the built-in end held no Child SA then
            key = (proto, int(spi, 16), dst)
            self.evidence.expected[key] = self.evidence.expected.get(key, 0) + n  # type: ignore[attr-defined]
        self.directory.mkdir(parents=True, exist_ok=True)  # type: ignore[attr-defined]
        (self.directory / STREAM_FILE).write_text(json.dumps(  # type: ignore[attr-defined]
            {"interval_s": s.interval, "sent": len(s.count.sent), "answered": len(s.count.answered),
             "lost": s.count.lost, "unsendable": s.count.unsendable, "through": s.count.by_sa()}, indent=1) + "\n")

    def replace(self, what: str = "child", by: str | None = "initiator") -> None:
        """Rekey (pair.rekey), then wait until the old SA is gone from both ends and every peer's kernel; after an IKE
        SA rekey the Child SA must stand on the new IKE SA with its SPIs unchanged (RFC 7296 s2.8); by None: an end rekeys
        on its own (its lifetimes). PeerFault otherwise."""
        ends = self.ends  # type: ignore[attr-defined]
        child = {e.name: self.child(e) for e in ends}  # type: ignore[attr-defined]
        ike = {e.name: [_ike_key(s) for s in self.ike_sas(e)] for e in ends}  # type: ignore[attr-defined]
        self.rekey(what, by)  # type: ignore[attr-defined]
        if what == "ike":
            for e in ends:
                now = self.child(e)  # type: ignore[attr-defined]
                if (now.spi_in, now.spi_out) != (child[e.name].spi_in, child[e.name].spi_out):
                    raise PeerFault(f"{e.name}: after the IKE SA rekey its Child SA is in 0x{now.spi_in:08x} out "
                                    f"0x{now.spi_out:08x}, before in 0x{child[e.name].spi_in:08x} out "
                                    f"0x{child[e.name].spi_out:08x}: the Child SAs move to the new IKE SA as they are",
                                    "RFC 7296 s2.8 MUST")
        old = {n: (c.spi_in, c.spi_out) for n, c in child.items()}

        def gone() -> dict[str, list[str]]:
            left: dict[str, list[str]] = {}
            for e in ends:
                sas = e.adapter.list_sas()
                if what == "ike":
                    held = [f"IKE SA {k}" for s in sas if s.name == self._conn().name  # type: ignore[attr-defined]
                            and (k := _ike_key(s)) in ike[e.name]]
                else:
                    held = [f"Child SA 0x{c.spi_in:08x} ({c.state})" for s in sas for c in s.children
                            if c.spi_in == old[e.name][0] and "DELETED" not in c.state]
                    held += [f"kernel outbound {st.proto} SA 0x{st.spi:08x}" for st in e.adapter.xfrm_state()
                             if st.spi == old[e.name][1] and st.proto in ("esp", "ah")]
                if held:
                    left[e.name] = held
            return left

        state: dict[str, Any] = {}

        def none_left() -> bool:
            state["left"] = gone()
            return not state["left"]

        try:
            self.wait(none_left, f"the {what} SA replaced by the rekey gone from both ends")  # type: ignore[attr-defined]
        except NoAnswer as e:
            raise PeerFault(f"after the {what} SA rekey by the {by} still held: {state.get('left')}; {e}",
                            "RFC 7296 s2.8 MUST") from None
        self.snapshot()  # type: ignore[attr-defined]


    def reauthenticated(self) -> None:
        """Wait for an end's own reauthentication (RFC 7296 s2.8.3): a new IKE SA made from scratch (IKE_SA_INIT and
        IKE_AUTH: the built-in end's new IKE SA replaces none), a new Child SA on it agreed by both ends (new SPIs), and
        the old IKE SA, its Child SA and each peer kernel's old outbound SA gone. PeerFault otherwise; UnsupportedFeature
        if the end rekeyed the IKE SA with CREATE_CHILD_SA instead (it did not reauthenticate)."""
        ends = self.ends  # type: ignore[attr-defined]
        before = {e.name: self._state(e) for e in ends}  # type: ignore[attr-defined]
        marks = {e.name: len(self.events(e)) for e in ends}  # type: ignore[attr-defined]
        if None in before.values():
            raise PeerFault(f"before the reauthentication the ends do not hold one IKE SA with one Child SA each: {before}",
                            self.requirement)  # type: ignore[attr-defined]

        def moved() -> bool:
            for e in ends:
                if any(isinstance(x, IkeSaEstablished) and x.rekeyed_from is not None
                       for x in self.events(e)[marks[e.name]:]):  # type: ignore[attr-defined]
                    raise UnsupportedFeature("asked to reauthenticate, the other end rekeyed the IKE SA with "
                                             "CREATE_CHILD_SA (RFC 7296 s2.8.3: a new IKE SA by IKE_SA_INIT and IKE_AUTH)")
            now = {e.name: self._state(e) for e in ends}  # type: ignore[attr-defined]
            return None not in now.values() and self._agreed_child() and all(  # type: ignore[attr-defined]
                now[n][0] != before[n][0] and not set(now[n][1]) & set(before[n][1]) for n in now)  # type: ignore[index]

        try:
            self.wait(moved, "reauthentication by an end on its own: one new IKE SA with a new Child SA on both ends, "
                             "the old IKE SA gone")  # type: ignore[attr-defined]
        except NoAnswer as e:
            held = {x.name: self.held(x) for x in ends}
            if all(h and all(sa[0] != before[n][0] and not sa[1] for sa in h) for n, h in held.items()):  # type: ignore[index]
                raise PeerFault(f"the IKE SA was reauthenticated (new IKE SA at both ends) but no Child SA was made on "
                                f"it: {held} ((IKE SA), Child SAs per end); RFC 7296 s2.8.3 creates the new Child SAs within "
                                f"the new IKE SA before the old one is deleted; {e}", self.requirement) from None  # type: ignore[attr-defined]
            raise
        old_out = {e.name: before[e.name][1][1] for e in ends}  # type: ignore[index]
        self.wait(lambda: not any(st.spi == old_out[e.name] and st.proto in ("esp", "ah") for e in ends if not e.builtin
                                  for st in e.adapter.xfrm_state()),
                  "each peer kernel's outbound SA of the old Child SA gone")  # type: ignore[attr-defined]
        self.snapshot()  # type: ignore[attr-defined]

    def held(self, end: Any) -> tuple[tuple[Any, ...], ...]:
        """What an end holds of the case: each IKE SA (SPIs, serial) with its live Child SAs' (inbound, outbound) SPIs."""
        return tuple((_ike_key(s), tuple(sorted((c.spi_in, c.spi_out) for c in s.children if _live(c))))
                     for s in self.ike_sas(end))  # type: ignore[attr-defined]

    def one_sa_each(self, what: str, before: dict[str, tuple[tuple[Any, ...], ...]]) -> bool:
        """True when each end holds one IKE SA with one Child SA, the two agree (SPIs crossed), and the rekeyed SA
        (what) is not the one each held before (held); an IKE SA rekey keeps the Child SA's SPIs."""
        now = {e.name: self.held(e) for e in self.ends}  # type: ignore[attr-defined]
        if not all(len(h) == 1 and len(h[0][1]) == 1 for h in now.values()):
            return False
        (a, b) = (now[e.name][0] for e in self.ends)  # type: ignore[attr-defined]
        if a[1][0] != b[1][0][::-1]:
            return False
        for name, h in now.items():
            old = before[name][0]
            if what == "child" and set(h[0][1][0]) & set(old[1][0]) or what == "ike" and (h[0][0] == old[0]
                                                                                        or h[0][1] != old[1]):
                return False
        return True

    def refused_rekey(self, marks: dict[str, int]) -> None:
        """Refused (FAILED) if the built-in end answered a CREATE_CHILD_SA of the other end with an error notify since
        marks (its event count per end), INVALID_KE_PAYLOAD aside (a retry may follow, RFC 7296 s1.3)."""
        for e in self.ends:  # type: ignore[attr-defined]
            for x in self.events(e)[marks.get(e.name, 0):]:  # type: ignore[attr-defined]
                if isinstance(x, ExchangeFailed) and not x.received and x.exchange == "CREATE_CHILD_SA" \
                        and x.notify != "INVALID_KE_PAYLOAD":
                    other = self.responder if e is self.initiator else self.initiator  # type: ignore[attr-defined]
                    raise Refused(f"the built-in end answered {other.name}'s CREATE_CHILD_SA with {x.notify}: {x.message}",
                                  self.requirement, x.notify)  # type: ignore[attr-defined]


def _live(c: Any) -> bool:
    """A Child SA neither rekeyed nor deleted (as Pair counts them)."""
    return "REKEYED" not in c.state and "DELETED" not in c.state


def _ike_key(s: Any) -> tuple[Any, ...]:
    """An IKE SA's identity as an end lists it (SPIs where the end reports them, its serial)."""
    return s.spi_i, s.spi_r, s.serial
