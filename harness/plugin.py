"""The pytest plugin: markers, the requirement marker, and hypothesis profiles."""
from __future__ import annotations

import os
import shutil

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
)


def pytest_configure(config: pytest.Config) -> None:
    for m in MARKERS:
        config.addinivalue_line("markers", m)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("root") and os.geteuid() != 0:
        pytest.skip("needs root: network namespaces and raw sockets")
    if item.get_closest_marker("dockerd"):
        if os.geteuid() != 0:
            pytest.skip("needs root to start a Docker daemon")
        if not shutil.which("dockerd"):
            pytest.skip("dockerd is not installed (Debian package docker.io)")
