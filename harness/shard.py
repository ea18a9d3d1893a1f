"""`--shard K/N`: run a deterministic 1/N of the collected tests, balanced by recorded durations where present.

Every shard of a run collects the same tests in the same order, so each computes the same assignment on its own:
the tests, heaviest first (a duration from `--shard-durations`, a results.json of an earlier run; else the
median recorded duration, or 1 with none), each go to the shard with the least weight so far (ties to the
lowest shard, then by node id). Shards share no state and need no scheduler: the CI system's own matrix runs them.
"""
from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.report.matrix import load_results

SPEC = re.compile(r"^(\d+)/(\d+)$")


@dataclass(frozen=True)
class Shard:
    """Shard index (1-based) of count."""

    index: int
    count: int


def parse_shard(text: str) -> Shard:
    """'K/N' with 1 <= K <= N; ConfigError naming the option otherwise."""
    m = SPEC.match(text.strip())
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise ConfigError(f"--shard {text!r}: expected K/N with 1 <= K <= N, e.g. 2/4")
    return Shard(int(m.group(1)), int(m.group(2)))


def load_durations(path: Path) -> dict[str, float]:
    """node id -> seconds from a results.json (harness.report.collector); ConfigError naming the file."""
    return {r["nodeid"]: float(r.get("duration") or 0.0) for r in load_results(path)}


def assign(nodeids: list[str], count: int, durations: dict[str, float] | None = None) -> list[int]:
    """The 0-based shard of each node id: longest first onto the lightest shard (LPT), deterministic."""
    known = durations or {}
    default = statistics.median(known.values()) if known else 1.0
    weight = {n: known.get(n, default) for n in nodeids}
    load = [0.0] * count
    out: dict[str, int] = {}
    for n in sorted(nodeids, key=lambda n: (-weight[n], n)):
        k = min(range(count), key=lambda i: (load[i], i))
        out[n] = k
        load[k] += weight[n]
    return [out[n] for n in nodeids]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ipsec-interop sharding")
    group.addoption("--shard", default=None, metavar="K/N", help="run only shard K of N of the collected tests")
    group.addoption("--shard-durations", default=None, metavar="RESULTS_JSON",
                    help="balance the shards by the durations in this results.json of an earlier run")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    text = config.getoption("--shard")
    if not text:
        return
    try:
        shard = parse_shard(text)
        path = config.getoption("--shard-durations")
        durations = load_durations(Path(path)) if path else None
    except ConfigError as e:
        raise pytest.UsageError(str(e)) from None
    mine = assign([i.nodeid for i in items], shard.count, durations)
    keep = [i for i, k in zip(items, mine) if k == shard.index - 1]
    config.hook.pytest_deselected(items=[i for i, k in zip(items, mine) if k != shard.index - 1])
    items[:] = keep
