"""The lab's pytest options and peer parametrization, run in a child pytest on a scratch project."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
CONFTEST = """
pytest_plugins = ["harness.plugin"]

def pytest_collection_modifyitems(items):
    for item in items:
        group = item.get_closest_marker("xdist_group")
        print("GROUP", item.nodeid, group.args[0] if group else None)
"""
TESTS = """
import pytest

def test_uses_peer(peer):
    assert peer

@pytest.mark.parametrize("peer", ["mine"])
def test_own_parametrization(peer):
    assert peer == "mine"

def test_uses_lab(lab):
    assert lab.tester
"""


def child_pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_scratch.py").write_text(TESTS)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTEST_XDIST_WORKER", None)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", "-s", "--rootdir", str(tmp_path),
                           str(tmp_path), *args], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)


def test_peer_option_parametrizes_with_stable_ids_and_xdist_groups(tmp_path):
    r = child_pytest(tmp_path, "--collect-only", "-q", "--peer", "alpha", "--peer", "beta", "--peer", "alpha")
    assert "GROUP test_scratch.py::test_uses_peer[alpha] alpha" in r.stdout
    assert "GROUP test_scratch.py::test_uses_peer[beta] beta" in r.stdout
    assert "test_scratch.py::test_own_parametrization[mine]" in r.stdout, "a test's own parametrization wins"
    assert "5 tests collected" in r.stdout, "repeated --peer values collapse: 2 + 2 + 1 own"


def test_a_peer_without_image_is_skipped_with_the_reason(tmp_path):
    r = child_pytest(tmp_path, "--peer", "no-such-peer", "-k", "uses_peer")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "peer 'no-such-peer': no image built" in r.stdout
    assert "1 skipped" in r.stdout


def test_without_any_built_peer_lab_tests_skip_saying_why(tmp_path, monkeypatch):
    from harness.lab import peering

    built, reason = peering.built_peers()
    if built:
        pytest.skip(f"peers are built here ({', '.join(built)}): nothing to skip")
    r = child_pytest(tmp_path, "-k", "uses_peer or uses_lab")
    assert reason in r.stdout and "2 skipped" in r.stdout, r.stdout


def test_external_runtime_needs_a_profile(tmp_path):
    r = child_pytest(tmp_path, "--runtime", "external", "--collect-only")
    assert r.returncode == 4 and "--profile" in r.stderr


def test_reports_name_the_host_kernel(tmp_path):
    r = child_pytest(tmp_path, "-k", "own_parametrization", f"--junitxml={tmp_path / 'j.xml'}")
    assert r.returncode == 0
    assert f'name="host_kernel" value="{os.uname().release}"' in (tmp_path / "j.xml").read_text()
