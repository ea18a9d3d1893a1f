"""Remove what killed runs left: recorded processes (pid + start time), labelled containers, namespaces, UML dirs."""
from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path
from typing import Callable

from harness.lab import labels, netns

UML_DIR = Path(os.path.expanduser("~/.uml"))  # linux.uml's default uml_dir


def _stop_process(rec: labels.PidRecord, grace: float = 3.0) -> bool:
    """SIGTERM, then SIGKILL after `grace` s, a process whose pid AND start time match rec; True if it was ours.

    A recorded process that leads its own process group (the runtimes start UML that way) is signalled as a
    group, so the helpers it forked go too: a process group ID cannot be reused while any member lives.
    """
    if not rec.alive():
        return False
    try:
        group = os.getpgid(rec.pid) == rec.pid
    except ProcessLookupError:
        return False

    def send(sig: int) -> None:
        try:
            (os.killpg if group else os.kill)(rec.pid, sig)
        except ProcessLookupError:
            pass

    send(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while rec.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if rec.alive() or group:
        send(signal.SIGKILL)  # the group: whatever of it outlived its leader
    return True


def _docker_containers(run: str | None) -> list[tuple[str, Callable[[], None], str]]:
    """(name, remove, run) of containers labelled ipsec-interop.run[=run]; empty if no docker daemon answers."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:
        return []
    try:
        client = docker.from_env(timeout=5)
        client.ping()
        label = labels.DOCKER_LABEL if run is None else f"{labels.DOCKER_LABEL}={run}"
        found = client.containers.list(all=True, filters={"label": label})
    except (DockerException, OSError):
        return []  # no daemon answers: nothing of ours can be running there
    return [(c.name, lambda c=c: c.remove(force=True), c.labels.get(labels.DOCKER_LABEL, "")) for c in found]


def candidate_runs(run: str | None = None) -> list[str]:
    """Runs that left something: state directories and namespaces named with the prefix."""
    if run is not None:
        return [labels.check_run_id(run)]
    runs = set(labels.known_runs())
    runs |= {r for r in map(labels.run_of, netns.names(labels.LABEL_PREFIX + "-")) if r}
    if UML_DIR.is_dir():
        runs |= {r for r in (labels.run_of(p.name) for p in UML_DIR.iterdir()) if r}
    return sorted(runs)


def clean(run: str | None = None, force: bool = False, say: Callable[[str], None] = print) -> list[str]:
    """Remove the leftovers of run (default: every run whose owners are all dead); the list of what went.

    A run with a live owner process (a test session still running) is skipped unless force is set.
    """
    removed: list[str] = []

    def gone(what: str) -> None:
        removed.append(what)
        say(f"removed {what}")

    runs = candidate_runs(run)
    containers = _docker_containers(run)
    for r in runs:
        owners = labels.live_owners(r)
        if owners and not force:
            say(f"skipped run {r}: still owned by live pid {', '.join(str(o.pid) for o in owners)} (use --force)")
            continue
        for path, rec in labels.pid_records(r):
            if _stop_process(rec):
                gone(f"process {rec.pid} ({rec.label}) of run {r}")
            path.unlink(missing_ok=True)
        for name, remove, crun in containers:
            if crun == r:
                remove()
                gone(f"container {name}")
        prefix = labels.resource_name(r) + "-"
        for ns in netns.names(prefix):
            if netns.delete(ns):
                gone(f"namespace {ns}")
        if UML_DIR.is_dir():
            for p in sorted(UML_DIR.glob(prefix + "*")):
                shutil.rmtree(p, ignore_errors=True)
                gone(f"UML dir {p}")
        d = labels.state_dir(r)
        if d.exists():
            shutil.rmtree(d, ignore_errors=True)
            gone(f"state dir {d}")
    if run is None:  # containers of runs with no other trace left
        live = {r for r in runs if labels.live_owners(r) and not force}
        for name, remove, crun in containers:
            if crun not in runs and crun not in live:
                remove()
                gone(f"container {name}")
    return removed
