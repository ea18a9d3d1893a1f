"""The lab's pytest options and peer parametrization, run in a child pytest on a scratch project."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.lab import labels

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

def test_cannot_reconfigure():
    from harness.errors import CannotReconfigure
    raise CannotReconfigure("profile vendor.toml: the device cannot be reconfigured")
"""


def child_pytest(tmp_path: Path, *args: str, conftest_extra: str = "") -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text(CONFTEST + conftest_extra)
    (tmp_path / "test_scratch.py").write_text(TESTS)
    # A run id of its own: the parent's pooled labs (same worker index) must not clash with the child's.
    env = {**os.environ, "PYTHONPATH": str(ROOT), labels.RUN_ENV: labels.new_run_id()}
    env.pop("PYTEST_XDIST_WORKER", None)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", "-s", "--rootdir", str(tmp_path),
                           str(tmp_path), *args], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)


def test_peer_option_parametrizes_with_stable_ids_and_xdist_groups(tmp_path):
    r = child_pytest(tmp_path, "--collect-only", "-q", "--peer", "alpha", "--peer", "beta", "--peer", "alpha")
    assert "GROUP test_scratch.py::test_uses_peer[alpha] alpha" in r.stdout
    assert "GROUP test_scratch.py::test_uses_peer[beta] beta" in r.stdout
    assert "test_scratch.py::test_own_parametrization[mine]" in r.stdout, "a test's own parametrization wins"
    assert "6 tests collected" in r.stdout, "repeated --peer values collapse: 2 + 2 + 1 own + 1"


def test_a_peer_without_image_is_skipped_with_the_reason(tmp_path):
    r = child_pytest(tmp_path, "--peer", "no-such-peer", "-k", "uses_peer")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "peer 'no-such-peer': no image" in r.stdout
    assert "1 skipped" in r.stdout


def test_without_any_built_peer_lab_tests_skip_saying_why(tmp_path):
    r = child_pytest(tmp_path, "-k", "uses_peer or uses_lab", conftest_extra=(
        "from harness.lab import peering\n"
        "peering.built_peers = lambda: ([], 'no peer image is built: the stand-in reason')\n"))
    assert "no peer image is built: the stand-in reason" in r.stdout and "2 skipped" in r.stdout, r.stdout


def test_cannot_reconfigure_an_external_device_is_a_skip_not_a_failure(tmp_path):
    r = child_pytest(tmp_path, "-k", "cannot_reconfigure")
    assert r.returncode == 0 and "1 skipped" in r.stdout
    assert "profile vendor.toml: the device cannot be reconfigured" in r.stdout


def test_external_runtime_needs_a_profile(tmp_path):
    r = child_pytest(tmp_path, "--runtime", "external", "--collect-only")
    assert r.returncode == 4 and "--profile" in r.stderr


def test_n_auto_takes_the_workers_env_and_names_a_bad_value(tmp_path, monkeypatch):
    monkeypatch.setenv("IPSEC_INTEROP_WORKERS", "2")
    r = child_pytest(tmp_path, "-n", "auto", "-k", "own_parametrization")
    assert r.returncode == 0 and "created: 2/2 workers" in r.stdout, r.stdout + r.stderr
    monkeypatch.setenv("IPSEC_INTEROP_WORKERS", "two")
    r = child_pytest(tmp_path, "-n", "auto", "-k", "own_parametrization")
    assert r.returncode == 4 and "IPSEC_INTEROP_WORKERS='two': not a whole number of workers" in r.stderr, r.stderr


def test_reports_name_the_host_kernel(tmp_path):
    r = child_pytest(tmp_path, "-k", "own_parametrization", f"--junitxml={tmp_path / 'j.xml'}")
    assert r.returncode == 0
    assert f'name="host_kernel" value="{os.uname().release}"' in (tmp_path / "j.xml").read_text()


FAKE_CONFTEST = """
import os
import pytest
pytest_plugins = ["harness.plugin"]
from harness.lab import peering
from harness.tests.lab.conftest import NamespacePeer


class NamespaceNode:
    def __init__(self, stand_in):
        self.stand_in = stand_in

    def exec(self, argv, timeout=10):
        import subprocess
        from harness.lab import netns
        r = netns.run_cmd(self.stand_in.netns, list(argv), timeout=timeout)
        return subprocess.CompletedProcess(argv, r.returncode, r.stdout, r.stderr)

    def stop(self):
        self.stand_in.close()


def start_in_namespace(lab, node, peer, runtime, profile):
    stand_in = NamespacePeer(lab, node)
    return peering.PeerHandle(peer, NamespaceNode(stand_in), stand_in, "netns", os.uname().release, "stand-in 1.0")


peering.built_peers = lambda: (["standin"], "")
peering.start_peer = start_in_namespace
"""
FAKE_TESTS = """
import pytest

@pytest.mark.topology("nat")
def test_nat_one(lab, peer):
    assert peer == "standin" and lab.topology.name == "nat"
    assert lab.lab.ping("tester", lab.lab.node("peer").address(), count=2)

@pytest.mark.topology("nat")
def test_nat_two(lab):
    assert lab.peer.exec(["true"])[0] == 0
    assert lab.lab.ping("tester", lab.lab.node("peer").address())

def test_direct(lab):
    assert lab.lab.ping("tester", lab.lab.node("peer").address())

def test_failing_one(lab):
    assert lab.lab.ping("tester", "198.18.255.254", timeout=0.2), "nobody has this address"
"""


@pytest.mark.root
def test_lab_fixture_end_to_end_with_a_namespace_standing_in_for_the_peer(tmp_path):
    import xml.etree.ElementTree as ET

    (tmp_path / "conftest.py").write_text(FAKE_CONFTEST)
    (tmp_path / "test_fake.py").write_text(FAKE_TESTS)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTEST_XDIST_WORKER", None)
    from harness.lab import labels, netns
    run = env["IPSEC_INTEROP_RUN"] = labels.new_run_id()
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--rootdir", str(tmp_path),
                        f"--capture-dir={tmp_path / 'out'}", f"--junitxml={tmp_path / 'j.xml'}", "-k", "not failing",
                        str(tmp_path)],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    cases = {c.get("name"): {p.get("name"): p.get("value") for p in c.iter("property")}
             for c in ET.parse(tmp_path / "j.xml").getroot().iter("testcase")}
    nat1, nat2 = cases["test_nat_one[standin]"], cases["test_nat_two[standin]"]
    assert nat1["runtime"] == "netns" and nat1["kernel"] == os.uname().release and nat1["peer_version"] == "stand-in 1.0"
    assert nat1["lab_build_s"] == nat2["lab_build_s"], "the second test reuses the first one's lab"
    pcap = tmp_path / "out" / nat1["artifact"] if "artifact" in nat1 else None
    shots = sorted((tmp_path / "out" / "captures").iterdir())
    assert len(shots) == 3
    nat_dir = next(d for d in shots if "test_nat_one" in d.name)
    assert sorted(p.name for p in nat_dir.iterdir()) == ["inside.pcap", "keys.json", "mgmt.pcap", "outside.pcap"]
    from harness.lab import read_pcap
    assert len(read_pcap(nat_dir / "outside.pcap")) >= 4, "two echo requests and replies crossed the outside segment"
    assert pcap is None or pcap.exists()
    for props in cases.values():
        print("per-test lab set-up + tear-down:", float(props["lab_setup_s"]) + float(props["lab_teardown_s"]),
              "s; lab build (first use):", props["lab_build_s"], "s")
    assert netns.names(f"ipsi-{run}-") == [], "the session's labs and stand-ins are gone"
    assert not labels.state_dir(run).exists()


def _fake_project(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "conftest.py").write_text(FAKE_CONFTEST)
    (tmp_path / "test_fake.py").write_text(FAKE_TESTS)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTEST_XDIST_WORKER", None)
    return env


@pytest.mark.root
def test_keep_lab_leaves_the_lab_standing_and_says_how_to_remove_it(tmp_path):
    from harness.lab import labels, netns
    from harness.lab.cleanup import clean

    env = _fake_project(tmp_path)
    run = env["IPSEC_INTEROP_RUN"] = labels.new_run_id()
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-s", "--rootdir", str(tmp_path),
                        "--keep-lab", "-k", "test_direct", f"--capture-dir={tmp_path / 'out'}", str(tmp_path)],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"ipsec-interop clean --run {run}" in r.stdout
        assert f"ip -n ipsi-{run}-0-direct-tester -br addr" in r.stdout
        left = netns.names(f"ipsi-{run}-")
        assert left == sorted(f"ipsi-{run}-0-direct-{role}" for role in ("lab", "peerstub", "tester")), \
            "lab, tester and the (stand-in) peer stay for inspection"
    finally:
        removed = clean(run=run, say=lambda s: None)
    assert netns.names(f"ipsi-{run}-") == [] and len([r for r in removed if r.startswith("namespace")]) == 3


def test_lab_tests_skip_saying_why_when_not_root(monkeypatch):
    from harness.lab import fixtures

    monkeypatch.setattr(fixtures.os, "geteuid", lambda: 1000)
    with pytest.raises(pytest.skip.Exception, match="needs root: the lab creates network namespaces and raw sockets"):
        fixtures._need_root()


@pytest.mark.root
def test_a_failed_lab_test_keeps_the_peers_log_and_sa_state_beside_its_capture(tmp_path):
    env = _fake_project(tmp_path)
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--rootdir", str(tmp_path),
                        "-k", "failing", f"--capture-dir={tmp_path / 'out'}", f"--junitxml={tmp_path / 'j.xml'}",
                        str(tmp_path)], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert r.returncode == 1 and "1 failed" in r.stdout, r.stdout + r.stderr
    (shot,) = (tmp_path / "out" / "captures").iterdir()
    assert {"peer.log", "peer.xfrm.txt", "keys.json", "net.pcap"} <= {p.name for p in shot.iterdir()}
    junit = (tmp_path / "j.xml").read_text()
    assert f'value="captures/{shot.name}/peer.xfrm.txt"' in junit
