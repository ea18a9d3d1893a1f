"""Anti-replay plans (RFC 4303 s3.4.3, Appendix A): sequence numbers the built-in end sends into a peer's SA, each
batch with the verdict the RFC gives it, played on a pair and judged by the peer's kernel counters.

A plan is designed from the window's edges (the top T, the left edge T-W+1, T-W just outside it) and built by
`PlanBuilder`, which checks every designed verdict against the harness's own receiver window (harness.esp.replay)
and follows the packet `expect_dropped` sends after each dropped batch (a correct one at the sender's next number,
which moves the top). `play(pair, plan)` sends it: accepted batches must be answered, dropped ones counted by
exactly the counters of their verdict; it returns how many packets the peer had to accept.
"""
from __future__ import annotations

from dataclasses import dataclass

from harness.errors import ConfigError, PacketDropped
from harness.esp import Faults, Sender
from harness.esp.replay import ReplayWindow

M32 = 0xFFFFFFFF
# the peer's counters each kind of drop must raise by exactly the number of packets (harness/cases/dataplane.py)
COUNTED = {"replayed": ("XfrmInStateSeqError", "replay"),
           "too_old": ("XfrmInStateSeqError", "replay-window"),
           "bad_icv": ("XfrmInStateProtoError", "failed")}


@dataclass(frozen=True)
class Batch:
    """Packets sent together: their (64-bit) sequence numbers, the verdict each must get, and why."""

    verdict: str  # "accepted", or a key of COUNTED
    seqs: tuple[int, ...]
    why: str
    seq_hi: int | None = None  # the ESN high half put into the ICV instead of the true one (a wrong epoch)


class PlanBuilder:
    """Batches checked against a model receiver: window 0 accepts everything (the check is off)."""

    def __init__(self, window: int, esn: bool = False) -> None:
        self.window, self.esn = window, esn
        self.model = ReplayWindow(window, esn) if window else None
        self.next = 1  # the built-in sender's next number (each crafted packet moves it past its own)
        self.batches: list[Batch] = []

    @property
    def top(self) -> int:
        """The highest number the peer accepted so far."""
        return self.model.top if self.model else self.next - 1

    def add(self, verdict: str, seqs: list[int], why: str, seq_hi: int | None = None) -> None:
        """One batch; ConfigError if the model gives any of its packets another verdict than the designed one."""
        for s in seqs:
            got = self._verdict(s)
            if got == "accepted" and seq_hi is not None and seq_hi != s >> 32:
                got = "bad_icv"  # new to the window, but its ICV covers another high half
            if got != verdict:
                raise ConfigError(f"plan for window {self.window}: {s:#x} ({why}) gets {got}, designed {verdict}")
            if got == "accepted" and self.model:
                self.model.accept(s)
            if seq_hi is None:
                self.next = max(self.next, s + 1)
        self.batches.append(Batch(verdict, tuple(seqs), why, seq_hi))
        if verdict != "accepted":  # expect_dropped's correct packet after the batch
            if self.model:
                self.model.accept(self.model.check(self.next & M32))
            self.next += 1

    def _verdict(self, seq: int) -> str:
        if not self.model:
            return "accepted"
        try:
            if self.model.check(seq & M32) != seq:
                return "bad_icv"  # the receiver infers another high half: the ICV cannot verify
        except PacketDropped as e:
            return e.reason
        return "accepted"


def window_plan(window: int) -> list[Batch]:
    """Numbers for a window of W packets from its edges (W >= 4), or for the check off (W = 0)."""
    p = PlanBuilder(window)
    if window == 0:
        p.add("accepted", [5], "a jump ahead to 5")
        p.add("accepted", [5, 5], "5 twice more: replays, accepted with the check off")
        p.add("accepted", [1, 3], "numbers below the top, accepted with the check off")
        p.add("accepted", [1000, 2], "far ahead, then far behind")
        return p.batches
    if window < 5:
        raise ConfigError(f"window_plan needs a window of at least 5 packets, not {window}")
    w = window
    t = w + 3
    p.add("accepted", [t], f"a jump to T={t}")
    p.add("accepted", [t - w + 1, t - 1], "the window's left edge T-W+1, and T-1 out of order")
    p.add("replayed", [t, t - w + 1, t - 1], "duplicates of T, T-W+1 and T-1")
    t = p.top
    p.add("too_old", [t - w, t - w - 1], "T-W (the left edge just slid out) and T-W-1")
    t = p.top
    p.add("accepted", [t + w - 1], "a jump of W-1: the old top becomes the left edge")
    p.add("replayed", [t], "the old top, now the left edge: a duplicate")
    p.add("too_old", [t], "the old top again, one slide later: now left of the window")
    t = p.top
    p.add("accepted", [t - w + 1, t - w + 2], "never-received numbers at the left edge and one right of it")
    return p.batches


def esn_plan(window: int) -> list[Batch]:
    """Numbers across the 2^32 boundary of the low-order bits (RFC 4303 Appendix A2.2) and from a wrong epoch."""
    p = PlanBuilder(window, esn=True)
    b = 1 << 32
    p.add("accepted", [1 << 31, b - 2], "the middle of the first 2^32 subspace, then its end")
    p.add("accepted", [b + 1], "2^32+1: low bits 1, the high half inferred 1 (A2.2 case A)")
    p.add("accepted", [b - 1], "2^32-1 out of order: low bits 0xffffffff inferred back in subspace 0 (case B)")
    p.add("replayed", [b - 2, b + 1], "duplicates on both sides of the boundary")
    p.add("accepted", [b], "2^32: low bits 0, valid with ESN, inside the window")
    p.add("bad_icv", [p.next], "the next number authenticated with high half 0: a packet from the wrong epoch",
          seq_hi=0)  # expect_dropped then sends that same number, right: accepted, the window did not move
    return p.batches


def at(seq: int, seq_hi: int | None = None):  # noqa: ANN201 - a harness.cases.dataplane.Make
    """A Make sending sequence number seq (64-bit; ICV over seq_hi when given) and moving the built-in sender
    past it, so its later packets stay above every crafted one (a wrong-epoch packet does not move it)."""
    def make(tx: Sender, inner: bytes) -> bytes:
        if seq_hi is None:
            tx.next_seq = max(tx.next_seq, seq + 1)
        return tx.protect(inner, Faults(seq=seq, seq_hi=seq_hi))
    return make


def play(pair, batches: list[Batch]) -> int:  # noqa: ANN001 - a harness.cases.pair.Pair
    """Send each batch into the peer: accepted ones answered, dropped ones counted (COUNTED) and followed by a
    correct packet (pair.expect_dropped); the number of packets the peer must have accepted."""
    accepted = 0
    for b in batches:
        what = f"{b.why} ({', '.join(hex(s) if s > 0xFFFF else str(s) for s in b.seqs)})"
        makes = [at(s, b.seq_hi) for s in b.seqs]
        if b.verdict == "accepted":
            pair.expect_accepted(makes, what)
            accepted += len(makes)
        else:
            pair.expect_dropped(makes, COUNTED[b.verdict], what)
            accepted += 1
    return accepted
