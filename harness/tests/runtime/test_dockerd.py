"""The Docker daemon in every state a host can be in, each with a dockerd of the test's own.

Each test gives the daemon its own socket, state, data and exec roots and "user" daemon.json under a
temporary folder, so nothing here touches the host's daemon or /etc/docker; every daemon a test starts is
stopped by its pid.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.commands import setup
from harness.errors import ConfigError, LabError, LabUnavailable
from harness.runtime import dockerd

# The file harness/run.sh wrote before this module owned the settings: with flags, dockerd refused it.
OLD_PROJECT_FILE = {"bridge": "none", "iptables": False, "ip6tables": False}


@pytest.fixture
def paths() -> Iterator[dockerd.DaemonPaths]:
    """Paths of a daemon of this test's own (short: a unix socket path has 108 bytes at most)."""
    top = Path(tempfile.mkdtemp(prefix="ipsi-d-", dir="/tmp"))
    p = dockerd.DaemonPaths(socket=top / "docker.sock", state=top / "state", user_config=top / "etc/daemon.json",
                            data_root=top / "data", exec_root=top / "exec")
    yield p
    dockerd.stop(p)
    subprocess.run(["umount", "-R", str(top / "data")], capture_output=True)  # overlay mounts, if any
    shutil.rmtree(top, ignore_errors=True)


def forwarding() -> str:
    return Path("/proc/sys/net/ipv4/ip_forward").read_text()


def test_settings_keep_the_users_keys_and_replace_the_network_ones(paths: dockerd.DaemonPaths) -> None:
    paths.user_config.parent.mkdir(parents=True)
    paths.user_config.write_text(json.dumps({"debug": True, "bridge": "docker0", "iptables": True,
                                             "bip": "203.0.113.1/24", "hosts": ["tcp://0.0.0.0:2375"]}))
    cfg = dockerd.daemon_config(paths)
    assert cfg["debug"] is True
    assert (cfg["bridge"], cfg["iptables"], cfg["ip6tables"], cfg["ip-forward"]) == ("none", False, False, False)
    assert "bip" not in cfg and cfg["hosts"] == [paths.host] and cfg["pidfile"] == str(paths.pidfile)


@pytest.mark.parametrize("text,what", [("{not json", "not readable as JSON"), ("[1]", "expected a JSON object")])
def test_a_broken_user_file_names_itself(paths: dockerd.DaemonPaths, text: str, what: str) -> None:
    paths.user_config.parent.mkdir(parents=True)
    paths.user_config.write_text(text)
    with pytest.raises(ConfigError, match=f"{paths.user_config}: {what}"):
        dockerd.daemon_config(paths)


def test_no_dockerd_installed_says_what_to_install(paths: dockerd.DaemonPaths, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dockerd.shutil, "which", lambda name: None)
    with pytest.raises(LabUnavailable, match=r"dockerd is not installed: install the Debian package docker.io"):
        dockerd.ensure(paths, out=lambda line: None)


def test_setup_without_docker_runs_on_exported_trees(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.runtime import images, uml

    info = images.ImageInfo("strongswan-5.9", "strongswan", "bookworm", "5.9.8", "sha256:1", "h", "t")
    monkeypatch.setattr(uml, "exported_images", lambda: [info])
    assert setup.without_docker(LabUnavailable("dockerd is not installed")) == 0
    out = capsys.readouterr().out
    assert "dockerd is not installed" in out and "exported UML root trees of strongswan-5.9" in out
    monkeypatch.setattr(uml, "exported_images", lambda: [])
    setup.without_docker(LabUnavailable("dockerd is not installed"))
    assert "the lab tests will be skipped" in capsys.readouterr().out


@pytest.mark.dockerd
def test_no_config_file_starts_a_daemon_without_bridge_nat_or_forwarding(paths: dockerd.DaemonPaths) -> None:
    before = forwarding()
    assert "started by this project" in dockerd.ensure(paths, out=lambda line: None)
    c = dockerd.client(paths)
    assert {n.name for n in c.networks.list()} <= {"host", "none"}, "no default bridge network"
    assert forwarding() == before
    assert not paths.user_config.exists()


@pytest.mark.dockerd
def test_the_file_the_project_used_to_write_no_longer_conflicts(paths: dockerd.DaemonPaths) -> None:
    paths.user_config.parent.mkdir(parents=True)
    paths.user_config.write_text(json.dumps(OLD_PROJECT_FILE))
    dockerd.ensure(paths, out=lambda line: None)
    assert dockerd.client(paths).ping()


@pytest.mark.dockerd
def test_a_users_file_is_honoured_and_never_rewritten(paths: dockerd.DaemonPaths) -> None:
    paths.user_config.parent.mkdir(parents=True)
    original = json.dumps({"debug": True, "bridge": "docker0", "log-level": "info"}, indent=4)
    paths.user_config.write_text(original)
    mtime = paths.user_config.stat().st_mtime_ns
    dockerd.ensure(paths, out=lambda line: None)
    info = dockerd.client(paths).info()
    assert info["Debug"] is True, "the user's own setting reaches the daemon"
    assert paths.user_config.read_text() == original and paths.user_config.stat().st_mtime_ns == mtime


@pytest.mark.dockerd
def test_a_daemon_of_this_project_is_used_again(paths: dockerd.DaemonPaths) -> None:
    dockerd.ensure(paths, out=lambda line: None)
    pid = dockerd.record(paths)["pid"]  # type: ignore[index]
    said: list[str] = []
    assert dockerd.ensure(paths, out=said.append) == f"Docker daemon at {paths.socket}: started by this project (pid {pid})"
    assert said == [], "nothing started the second time"


@pytest.mark.dockerd
def test_a_users_running_daemon_is_used_as_it_is(paths: dockerd.DaemonPaths) -> None:
    paths.state.mkdir(parents=True)
    argv = ["dockerd", "-H", paths.host, "--data-root", str(paths.data_root), "--exec-root", str(paths.exec_root),
            "--pidfile", str(paths.state / "users.pid"), "--bridge=none", "--iptables=false", "--ip6tables=false",
            "--ip-forward=false"]
    with open(paths.state / "users.log", "wb") as log:
        user = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                dockerd.client(paths)
                break
            except LabUnavailable:
                assert user.poll() is None and time.monotonic() < deadline, (paths.state / "users.log").read_text()
                time.sleep(0.2)
        said: list[str] = []
        assert dockerd.ensure(paths, out=said.append).endswith("not started by this project, used as it is")
        assert said == [] and dockerd.record(paths) is None and not paths.config.exists()
    finally:
        user.terminate()
        user.wait(timeout=30)


@pytest.mark.dockerd
def test_a_stale_pid_file_of_a_dead_daemon_is_removed(paths: dockerd.DaemonPaths) -> None:
    paths.state.mkdir(parents=True)
    # the pid file names a live process that is no daemon of ours (dockerd alone would refuse to start)
    other = subprocess.Popen(["sleep", "120"])
    try:
        paths.pidfile.write_text(str(other.pid))
        paths.record.write_text(json.dumps({"pid": other.pid, "start_time": 1, "argv": ["dockerd"]}))
        said: list[str] = []
        dockerd.ensure(paths, out=said.append)
        assert any("removing the stale pid file" in line for line in said)
        rec = dockerd.record(paths)
        assert rec and rec["pid"] != other.pid and int(paths.pidfile.read_text()) == rec["pid"]
        assert other.poll() is None, "the process the stale file named is left alone"
    finally:
        other.kill()
        other.wait()


@pytest.mark.dockerd
def test_a_daemon_that_cannot_start_fails_with_its_log(paths: dockerd.DaemonPaths) -> None:
    paths.user_config.parent.mkdir(parents=True)
    paths.user_config.write_text(json.dumps({"storage-driver": "no-such-driver"}))
    with pytest.raises(LabError, match=r"dockerd exited \d+ at start; its log") as e:
        dockerd.ensure(paths, out=lambda line: None)
    assert "no-such-driver" in str(e.value)
    assert dockerd.record(paths) is None
