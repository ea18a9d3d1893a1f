"""The Docker daemon the lab builds its images with: find one that answers, or start the project's own.

One owner of the daemon's settings: this module. A daemon that already answers (the project's or the
user's) is used as it is; the lab never uses its networks (containers run with network_mode=none). A
daemon started here reads a config file of its own (DaemonPaths.config), never flags: dockerd refuses a
setting given both as a flag and in a file. That file is the user's /etc/docker/daemon.json, read and never
written, with the keys that make networks or firewall rules on the host replaced (OVERRIDES): no default
bridge, no iptables/ip6tables rules, no change of the host's ip_forward. Its pid and start time are
recorded beside its pid file, so a pid file left by a daemon that died is recognised and removed.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from harness.errors import ConfigError, LabError, LabUnavailable
from harness.lab import labels
from harness.progress import say as default_say

START_TIMEOUT = 90.0
# Keys of a user's daemon.json that a daemon of this project must not take: they make the default bridge,
# NAT or filter rules, or forwarding on the host, or they name sockets and files this module owns.
OVERRIDES: dict[str, Any] = {"bridge": "none", "iptables": False, "ip6tables": False, "ip-forward": False,
                             "ip-masq": False}
DROPPED = ("bip", "fixed-cidr", "fixed-cidr-v6", "default-gateway", "default-gateway-v6", "hosts", "pidfile",
           "ipv6", "userland-proxy")
INSTALL_HINT = ("install the Debian package docker.io (`apt-get install docker.io`, or run `bash harness/run.sh`, "
                "which installs it); without it only already exported UML root trees can run")


@dataclass(frozen=True)
class DaemonPaths:
    """Where a daemon listens and keeps its state; the defaults are the host's standard daemon."""

    socket: Path = Path("/var/run/docker.sock")
    state: Path = labels.STATE_ROOT          # record, pid file, log and config of the daemon started here
    user_config: Path = Path("/etc/docker/daemon.json")
    data_root: Path | None = None            # None: the user's config or dockerd's default (/var/lib/docker)
    exec_root: Path | None = None            # None: dockerd's default (/var/run/docker)

    @property
    def host(self) -> str:
        """The daemon's address as the docker SDK takes it."""
        return f"unix://{self.socket}"

    @property
    def pidfile(self) -> Path:
        """The pid file a daemon started here writes."""
        return self.state / "dockerd.pid"

    @property
    def record(self) -> Path:
        """{pid, start_time, argv} of the daemon started here."""
        return self.state / "dockerd.json"

    @property
    def log(self) -> Path:
        """The log of the daemon started here."""
        return self.state / "dockerd.log"

    @property
    def config(self) -> Path:
        """The config file the daemon started here reads (written by daemon_config)."""
        return self.state / "dockerd-config.json"


def client(paths: DaemonPaths = DaemonPaths(), timeout: int = 10) -> Any:
    """A docker SDK client to the daemon at paths.socket; LabUnavailable if none answers there."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:
        raise LabUnavailable("the docker Python package is not installed") from None
    try:
        c = docker.DockerClient(base_url=paths.host, timeout=timeout)
        c.ping()
    except (DockerException, OSError) as e:
        raise LabUnavailable(f"no Docker daemon answers at {paths.socket} ({e})") from None
    return c


def record(paths: DaemonPaths = DaemonPaths()) -> dict[str, Any] | None:
    """The record of the daemon started here, if that very process (pid and start time) still runs."""
    try:
        rec = json.loads(paths.record.read_text())
        if labels.proc_start_time(int(rec["pid"])) == int(rec["start_time"]):
            return rec
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def daemon_config(paths: DaemonPaths = DaemonPaths()) -> dict[str, Any]:
    """The settings of a daemon started here: the user's daemon.json (if any) with OVERRIDES and our paths."""
    user: dict[str, Any] = {}
    if paths.user_config.exists():
        try:
            user = json.loads(paths.user_config.read_text() or "{}")
        except (OSError, ValueError) as e:
            raise ConfigError(f"{paths.user_config}: not readable as JSON ({e}); fix it (this project reads it to "
                              "keep your daemon settings and never writes it)") from None
        if not isinstance(user, dict):
            raise ConfigError(f"{paths.user_config}: expected a JSON object, found {type(user).__name__}")
    cfg = {k: v for k, v in user.items() if k not in OVERRIDES and k not in DROPPED}
    cfg.update(OVERRIDES)
    cfg["hosts"] = [paths.host]
    cfg["pidfile"] = str(paths.pidfile)
    if paths.data_root:
        cfg["data-root"] = str(paths.data_root)
    if paths.exec_root:
        cfg["exec-root"] = str(paths.exec_root)
    return cfg


def _clear_stale(paths: DaemonPaths, out: Callable[[str], None]) -> None:
    """Remove the pid file and record of a daemon started here that no longer runs (dockerd refuses a live pid)."""
    if record(paths) is not None:
        raise LabError(f"dockerd pid {record(paths)['pid']} (started by this project, {paths.record}) runs but "  # type: ignore[index]
                       f"does not answer at {paths.socket}: see {paths.log}; stop it (kill PID) and run setup again")
    if paths.pidfile.exists():
        text = paths.pidfile.read_text(errors="replace").strip()
        out(f"removing the stale pid file {paths.pidfile} (pid {text or '?'}: no daemon of this project runs)")
        paths.pidfile.unlink()
    paths.record.unlink(missing_ok=True)


def start(paths: DaemonPaths = DaemonPaths(), out: Callable[[str], None] = default_say,
          timeout: float = START_TIMEOUT) -> int:
    """Start the project's dockerd for paths and wait until it answers; its pid. LabError with its log if not."""
    exe = shutil.which("dockerd")
    if not exe:
        raise LabUnavailable(f"dockerd is not installed: {INSTALL_HINT}")
    paths.state.mkdir(parents=True, exist_ok=True)
    _clear_stale(paths, out)
    paths.config.write_text(json.dumps(daemon_config(paths), indent=2) + "\n")
    argv = [exe, "--config-file", str(paths.config)]
    log_start = paths.log.stat().st_size if paths.log.exists() else 0
    with open(paths.log, "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    paths.record.write_text(json.dumps({"pid": proc.pid, "start_time": labels.proc_start_time(proc.pid), "argv": argv}))
    out(f"started dockerd (pid {proc.pid}, config {paths.config}, log {paths.log})")
    t0 = time.monotonic()
    next_note = t0 + 10
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            paths.record.unlink(missing_ok=True)
            raise LabError(f"dockerd exited {proc.returncode} at start; its log ({paths.log}):\n"
                           f"{_tail(paths.log, log_start)}")
        try:
            client(paths, timeout=5)
            out(f"dockerd answers at {paths.socket} after {time.monotonic() - t0:.1f} s")
            return proc.pid
        except LabUnavailable:
            if time.monotonic() > next_note:
                out(f"  ... waiting for dockerd to answer: {time.monotonic() - t0:.0f} s so far")
                next_note += 10
            time.sleep(0.2)
    raise LabError(f"dockerd (pid {proc.pid}) did not answer at {paths.socket} within {timeout:.0f} s; "
                   f"it is left running; its log ({paths.log}):\n{_tail(paths.log, log_start)}")


def ensure(paths: DaemonPaths = DaemonPaths(), out: Callable[[str], None] = default_say) -> str:
    """Use the daemon that answers at paths.socket, or start the project's own; a one-line description."""
    try:
        client(paths, timeout=5)
    except LabUnavailable:
        pid = start(paths, out)
        return f"Docker daemon at {paths.socket}: started by this project (pid {pid})"
    rec = record(paths)
    who = f"started by this project (pid {rec['pid']})" if rec else "not started by this project, used as it is"
    return f"Docker daemon at {paths.socket}: {who}"


def stop(paths: DaemonPaths, timeout: float = 30.0) -> bool:
    """Stop the daemon started here for paths (by its recorded pid); False if none of ours runs."""
    rec = record(paths)
    if rec is None:
        return False
    pid = int(rec["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while labels.proc_start_time(pid) == rec["start_time"] and time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
        except ChildProcessError:
            pass
        time.sleep(0.1)
    if labels.proc_start_time(pid) == rec["start_time"]:
        os.kill(pid, signal.SIGKILL)
    paths.record.unlink(missing_ok=True)
    return True


def _tail(path: Path, start: int = 0, n: int = 3000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(start)
            return f.read().decode(errors="replace")[-n:] or "(empty)"
    except OSError:
        return "(no log)"
