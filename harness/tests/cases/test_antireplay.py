"""The anti-replay plans (harness/cases/antireplay.py) against the harness's own receiver window, and window 0."""
from __future__ import annotations

import pytest

from harness.cases.antireplay import COUNTED, PlanBuilder, at, esn_plan, window_plan
from harness.errors import ConfigError, PacketDropped
from harness.esp import Faults
from harness.esp.replay import ReplayWindow

M32 = 0xFFFFFFFF


def replayed(plan, window: int, esn: bool = False) -> list[str]:  # noqa: ANN001
    """Each packet's verdict from an independent run of ReplayWindow, the trailing correct packets included."""
    w, nxt, out = ReplayWindow(window, esn), 1, []
    for b in plan:
        for s in b.seqs:
            if b.seq_hi is not None:
                out.append("bad_icv" if w.infer(s & M32) != (b.seq_hi << 32 | s & M32) else "?")
                continue
            try:
                got = w.check(s & M32)
                out.append("accepted" if got == s else "bad_icv")
                w.accept(got)
            except PacketDropped as e:
                out.append(e.reason)
            nxt = max(nxt, s + 1)
        if b.verdict != "accepted":
            w.accept(w.check(nxt & M32))
            nxt += 1
    return out


@pytest.mark.parametrize("window", [5, 32, 33, 64, 128, 1024, 4096])
def test_every_window_plan_gets_its_designed_verdicts_with_each_kind_of_drop(window: int) -> None:
    plan = window_plan(window)
    assert replayed(plan, window) == [b.verdict for b in plan for _ in b.seqs]
    assert {b.verdict for b in plan} == {"accepted", "replayed", "too_old"}
    assert plan[1].seqs[0] == plan[0].seqs[0] - window + 1  # the left edge T-W+1 of the first top T, accepted


def test_window_0_takes_duplicates_and_old_numbers() -> None:
    plan = window_plan(0)
    assert {b.verdict for b in plan} == {"accepted"}
    w = ReplayWindow(0)
    for s in (5, 5, 1, 3, 1000, 2):
        assert w.check(s) == s
        w.accept(s)
    assert w.top == 1000 and not w.seen(5)


def test_small_windows_are_refused_and_a_wrong_design_is_caught() -> None:
    with pytest.raises(ConfigError, match="at least 5"):
        window_plan(4)
    p = PlanBuilder(32)
    p.add("accepted", [40], "top")
    with pytest.raises(ConfigError, match="gets too_old, designed replayed"):
        p.add("replayed", [8], "below the window")
    e = PlanBuilder(32, esn=True)
    e.add("accepted", [40], "top")
    with pytest.raises(ConfigError, match="gets replayed, designed bad_icv"):  # the replay check comes first
        e.add("bad_icv", [40], "a duplicate from the wrong epoch", seq_hi=1)
    e.add("bad_icv", [41], "new, from the wrong epoch", seq_hi=1)


@pytest.mark.parametrize("window", [32, 128, 4096])
def test_the_esn_plan_crosses_2_32_both_ways_and_sends_one_wrong_epoch(window: int) -> None:
    plan = esn_plan(window)
    assert replayed(plan, window, esn=True) == [b.verdict for b in plan for _ in b.seqs]
    seqs = [s for b in plan for s in b.seqs]
    assert any(s >> 32 == 0 and s & M32 == M32 for s in seqs) and any(s >> 32 == 1 for s in seqs)
    bad = [b for b in plan if b.verdict == "bad_icv"]
    assert len(bad) == 1 and bad[0].seq_hi == 0 and bad[0].seqs[0] >> 32 == 1
    assert set(COUNTED) >= {b.verdict for b in plan} - {"accepted"}


def test_at_moves_the_sender_past_its_number_but_not_for_a_wrong_epoch() -> None:
    class Tx:
        next_seq = 3

        def protect(self, inner: bytes, faults: Faults) -> bytes:
            return b"%d/%s" % (faults.seq, str(faults.seq_hi).encode())

    tx = Tx()
    assert at(10)(tx, b"") == b"10/None" and tx.next_seq == 11
    at(5)(tx, b"")
    assert tx.next_seq == 11
    assert at(1 << 32, seq_hi=0)(tx, b"") == b"4294967296/0" and tx.next_seq == 11
