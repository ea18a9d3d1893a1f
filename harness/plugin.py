"""The pytest plugin: markers, the requirement marker, and hypothesis profiles."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# the lab: --peer/--runtime/--profile/--keep-lab options, `peer`/`lab`/`lab_pool` fixtures; the `pair` fixture of
# interop cases; verdicts and results (Unimplemented and CannotReconfigure become skips there, documented
# differences xfails); --shard K/N (harness.shard); --progress (harness.report.live)
pytest_plugins = ["harness.lab.fixtures", "harness.cases.plugin", "harness.report.collector", "harness.report.live",
                  "harness.shard"]

settings.register_profile("ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

MARKERS = (
    "rfc(number, section, level): the requirement a test checks, e.g. rfc(4303, '3.4.3', 'MUST')",
    "root: needs root (network namespaces, raw sockets)",
    "lab: needs the lab: root, a runtime and the peers' images",
    "smoke: the lab smoke test, one per peer",
    "tshark: needs tshark",
    "browser: opens pages in headless Chromium (Debian package chromium)",
    "dockerd: starts a Docker daemon of its own: needs root and dockerd (Debian package docker.io)",
    "load: a load case (suites/load): deselected unless asked for by -m (an expression naming load) or by its path",
)
LOAD_DIR = ("suites", "load")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ipsec-interop")
    for key, what in (("n", "IKE SAs"), ("rate", "IKE SAs started (and deleted) per second"),
                      ("hold", "seconds to hold them"), ("sample", "Child SAs carrying an echo request a second")):
        group.addoption(f"--load-{key}", default=None,
                        help=f"load cases: {what}, replacing the table's (env IPSEC_INTEROP_LOAD_{key.upper()})")


def pytest_configure(config: pytest.Config) -> None:
    for m in MARKERS:
        config.addinivalue_line("markers", m)


def _asked_for_load(config: pytest.Config, item: pytest.Item) -> bool:
    """True when the -m expression names load or a path given on the command line lies in the load suite."""
    if re.search(r"\bload\b", config.getoption("markexpr", "") or ""):
        return True
    here = Path(str(item.path)).resolve()
    for arg in config.args:
        p = Path(config.invocation_params.dir, arg.split("::")[0]).resolve()
        if p.parts[-2:] == LOAD_DIR or LOAD_DIR in zip(p.parts, p.parts[1:]):
            if p == here or p in here.parents:
                return True
    return False


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """Workers for `-n auto`: IPSEC_INTEROP_WORKERS, else one more than the cores, at most 4.

    Lab cases wait on their guests more than they compute (46 % of two cores busy on one worker): on this 2-core
    machine two workers, each with its own guests (one xdist group per peer), ran them in 0.6 of the time, and a third
    another 14 % faster (a 1/12 shard of the lab cases: 271 s on two, 234 s on three)."""
    wanted = os.environ.get("IPSEC_INTEROP_WORKERS", "")
    if wanted:
        if not wanted.isdigit():
            raise pytest.UsageError(f"IPSEC_INTEROP_WORKERS={wanted!r}: not a whole number of workers")
        return int(wanted)
    return min(len(os.sched_getaffinity(0)) + 1, 4)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Load cases run on request only (they take minutes per peer): deselected unless asked for."""
    drop = [i for i in items if i.get_closest_marker("load") and not _asked_for_load(config, i)]
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = [i for i in items if i not in drop]


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("root") and os.geteuid() != 0:
        pytest.skip("needs root: network namespaces and raw sockets")
    if item.get_closest_marker("dockerd"):
        if os.geteuid() != 0:
            pytest.skip("needs root to start a Docker daemon")
        if not shutil.which("dockerd"):
            pytest.skip("dockerd is not installed (Debian package docker.io)")
