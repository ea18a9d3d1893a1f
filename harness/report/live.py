"""`--progress`: a line every so often while the suites run: cases done of total, failures so far, the case that
finished last, and an ETA from the pace so far. Plain lines (no cursor tricks), so a CI log shows them as they come."""
from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from harness.progress import say

EVERY = 15.0  # seconds between lines; a failure is printed at once
BAD = ("failed",)


def eta(done: int, total: int, elapsed: float) -> str:
    """Time left at the pace so far, as '12m05s' ('?' before the first case ends)."""
    if done <= 0 or total <= done:
        return "?" if done <= 0 else "0s"
    left = elapsed / done * (total - done)
    return f"{int(left // 60)}m{int(left % 60):02d}s" if left >= 60 else f"{left:.0f}s"


class Progress:
    """Counts finished tests from their reports (the xdist controller sees every worker's)."""

    def __init__(self, out: Callable[[str], None] = say, every: float = EVERY, clock: Callable[[], float] = time.monotonic) -> None:
        self.out, self.every, self.clock = out, every, clock
        self.total = self.done = 0
        self.failed: set[str] = set()
        self.t0 = self.last = clock()

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.total = len(session.items)
        self.t0 = self.last = self.clock()

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: object, ids: list[str]) -> None:
        self.total = max(self.total, len(ids))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        failed = report.outcome in BAD
        if report.when == "teardown":
            self.done += 1
        if failed and report.nodeid not in self.failed:
            self.failed.add(report.nodeid)
            self.out(f"[progress] FAILED {report.nodeid} ({report.when})")
        now = self.clock()
        if report.when == "teardown" and (now - self.last >= self.every or self.done == self.total):
            self.last = now
            self.out(self.line(report.nodeid, now))

    def line(self, current: str, now: float) -> str:
        """The status line after current finished."""
        return (f"[progress] {self.done}/{self.total} tests, {len(self.failed)} failed so far, "
                f"{now - self.t0:.0f} s, ETA {eta(self.done, self.total, now - self.t0)}; last: {current}")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("ipsec-interop report").addoption(
        "--progress", action="store_true", help=f"print a progress line every {EVERY:.0f} s and each failure at once")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--progress", False) and not hasattr(config, "workerinput"):
        config.pluginmanager.register(Progress(out=lambda line: _write(config, line)), "ipsi-progress")


def _write(config: pytest.Config, line: str) -> None:
    """line on a line of its own, also after pytest's result letters (-q and default verbosity share a line)."""
    tr = config.pluginmanager.get_plugin("terminalreporter")  # registered after this plugin's configure: look it up now
    if tr is None:
        say(line)
        return
    tr.write(("\n" if config.option.verbose <= 0 else "") + line + "\n", flush=True)
