"""`ipsec-interop setup`: a Docker daemon without bridge or NAT, the peers' images, their UML root trees, the probe.

Idempotent and quick when everything is there: a daemon that answers is used as it is; images are rebuilt
only when their inputs change (harness/runtime/images.py); root trees are exported once per image id.
A daemon this command starts runs as `dockerd --bridge=none --iptables=false --ip6tables=false` in the
background, its pid in /run/ipsec-interop/dockerd.pid and /run/ipsec-interop/dockerd.json (pid and start
time), its log in /run/ipsec-interop/dockerd.log; it is left running for later runs.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
from pathlib import Path

from harness.errors import LabError, LabUnavailable
from harness.lab import labels
from harness.runtime import images

STATE = labels.STATE_ROOT
DOCKERD_ARGV = ["dockerd", "--bridge=none", "--iptables=false", "--ip6tables=false"]
DOCKERD_WAIT = 60.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-build", action="store_true", help="only make sure a Docker daemon answers")
    p.add_argument("--force", action="store_true", help="rebuild the images even if cached")
    p.add_argument("--only", action="append", default=[], help="build only this peer (strongswan, libreswan) or tag")
    p.add_argument("--no-export", action="store_true", help="do not export the UML root trees now")


def dockerd_record() -> dict | None:
    """The record of the daemon this command started ({pid, start_time, argv}), if that process still runs."""
    try:
        rec = json.loads((STATE / "dockerd.json").read_text())
        if labels.proc_start_time(int(rec["pid"])) == int(rec["start_time"]):
            return rec
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def ensure_dockerd(say=print) -> str:
    """Make sure a Docker daemon answers; start the project's own if none does. Returns a one-line description."""
    try:
        images.docker_client(timeout=5)
        rec = dockerd_record()
        return f"Docker daemon answers ({'ours, pid ' + str(rec['pid']) if rec else 'not started by this project'})"
    except LabUnavailable:
        pass
    exe = shutil.which("dockerd")
    if not exe:
        raise LabUnavailable("dockerd is not installed (Debian package docker.io)")
    STATE.mkdir(parents=True, exist_ok=True)
    argv = [exe, *DOCKERD_ARGV[1:], "--pidfile", str(STATE / "dockerd.pid")]
    log_path = STATE / "dockerd.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    start = labels.proc_start_time(proc.pid)
    (STATE / "dockerd.json").write_text(json.dumps({"pid": proc.pid, "start_time": start, "argv": argv}))
    say(f"started dockerd (pid {proc.pid}, log {log_path})")
    deadline = time.monotonic() + DOCKERD_WAIT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LabError(f"dockerd exited {proc.returncode}:\n{_tail(log_path)}")
        try:
            images.docker_client(timeout=5)
            return f"Docker daemon answers (ours, pid {proc.pid})"
        except LabUnavailable:
            time.sleep(0.3)
    raise LabError(f"dockerd (pid {proc.pid}) did not answer within {DOCKERD_WAIT:.0f} s:\n{_tail(log_path)}")


def _tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return "(no log)"


def run(args: argparse.Namespace) -> int:
    """Daemon, images, root trees, probe; a missing tool (LabUnavailable) is reported and exits 0: lab tests then skip."""
    t0 = time.monotonic()
    try:
        print(ensure_dockerd())
    except LabUnavailable as e:
        print(f"setup: {e}: the lab tests will be skipped")
        return 0
    if args.no_build:
        return 0
    built = images.build_all(force=args.force, only=args.only or None)
    for info, now, seconds in built:
        print(f"{info.name:16} {info.version:24} {info.release:9} {'built' if now else 'cached'} {seconds:6.1f} s  {info.image_id[7:19]}")
    if not args.no_export and shutil.which("linux.uml"):
        from harness.runtime import uml

        for info, _, _ in built:
            t = time.monotonic()
            path, made = uml.rootfs(info)
            if made:
                print(f"{info.name:16} UML root tree {path} exported in {time.monotonic() - t:.1f} s")
        if not args.only:
            for p in uml.prune_rootfs([i.image_id for i in images.built_images()]):
                print(f"removed the stale UML root tree {p}")
    from harness.runtime.probe import probe

    print(probe().describe())
    print(f"setup done in {time.monotonic() - t0:.1f} s")
    return 0
