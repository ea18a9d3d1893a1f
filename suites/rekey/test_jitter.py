"""The peer jitters its rekeys (RFC 7296 s2.8.1 SHOULD), one row of jitter.json a case.

The peer's Child SA is set to rekey at random within a window (strongSwan rand_time, Libreswan rekeyfuzz); the
built-in end times several successive rekeys the peer makes on its own (its CREATE_CHILD_SA requests, each Child
SA's establishment to the next one's) and records them, and those outside the configured window (local policy, not
judged). Intervals that do not spread at all (within `slack` of each other) are NON-STRICT.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.cases.table import row_params
from harness.ike.events import ChildSaEstablished
from harness.report.checks import should

pytestmark = [pytest.mark.lab, pytest.mark.root]

TABLE = Path(__file__).with_name("jitter.json")


def _rows() -> list[Any]:
    return row_params(TABLE, {"lifetimes", "rekeys", "slack"})


@pytest.mark.parametrize("row", _rows())
def test_the_peer_jitters_its_rekeys(pair, row, request):
    lt, n, slack = row["lifetimes"], row["rekeys"], row["slack"]
    pair.establish(pair.connection(lifetimes=lt))
    end = pair.builtin
    made = lambda: [t for e, t in zip(end.events, end.event_times) if isinstance(e, ChildSaEstablished)]  # noqa: E731
    first = len(made()) - 1  # the Child SA of the IKE_AUTH
    for k in range(1, n + 1):
        pair.wait(lambda k=k: len(made()) > first + k, f"{pair.peer.name}'s rekey {k} of {n} on its own",
                  timeout=lt["child_life_time"] + 30)
    times = made()[first:first + n + 1]
    intervals = [round(b - a, 2) for a, b in zip(times, times[1:])]
    request.node.user_properties.append(("rekey_intervals", intervals))
    low, high = lt["child_rekey_time"] - lt["child_rand_time"], lt["child_rekey_time"]
    # recorded, not judged: where an end puts its rekey is local policy (RFC 7296 s2.8), and pluto rekeys an SA it
    # answered later than one it made itself
    request.node.user_properties.append(("outside_window", [i for i in intervals if not low - slack <= i <= high + slack]))
    should(request, max(intervals) - min(intervals) > slack, pair.requirement,
           f"{pair.peer.name}'s rekey intervals {intervals} s do not spread over its window {low}-{high} s (no jitter)")
    pair.terminate()
