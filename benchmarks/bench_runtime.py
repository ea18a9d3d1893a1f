"""Peer start-to-ready per runtime, agent round trip, and RAM per node, for every built image.

    sudo python3 benchmarks/bench_runtime.py [--rounds 3] [--runtime docker --runtime uml] [--daemon]

For each image and runtime: median start() to ready (container or guest created, links made, agent's
ready frame), median stop(), median exec round trip (`true`), and memory: a UML guest's proportional
set size (PSS) over its host processes, and what the guest itself reports as used (`free`); a container's
cgroup memory use. --daemon also starts the IKE daemon (charon / pluto) and times it to answering its
control tool. Then the uml/docker ratio of start-to-ready. All numbers come from this run; nothing is asserted.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.lab import labels  # noqa: E402
from harness.runtime import get_runtime, images  # noqa: E402
from harness.runtime.base import LinkSpec, Node, NodeSpec  # noqa: E402


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def guest_used_mib(node: Node) -> float:
    """Memory in use as the node's kernel sees it (MemTotal - MemAvailable), MiB."""
    info = dict(line.split(":", 1) for line in node.exec(["cat", "/proc/meminfo"]).stdout.splitlines())
    kib = int(info["MemTotal"].split()[0]) - int(info["MemAvailable"].split()[0])
    return kib / 1024


def container_mib(node: Node) -> float:
    """The container's cgroup memory use, MiB (cgroup v1 or v2), nan if unreadable."""
    cid = node.container.id  # type: ignore[attr-defined]
    for p in (f"/sys/fs/cgroup/memory/docker/{cid}/memory.usage_in_bytes", f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/memory.current"):
        try:
            return int(Path(p).read_text()) / 2**20
        except OSError:
            continue
    return float("nan")


def start_daemon(node: Node, peer: str) -> float:
    """Start the peer's IKE daemon; seconds until its control tool answers."""
    t0 = time.perf_counter()
    if peer == "strongswan":
        node.spawn(["/usr/lib/ipsec/charon"], "/var/log/charon.log")
        argv = ["swanctl", "--stats"]
    else:
        node.exec(["ipsec", "initnss"], timeout=60)
        node.spawn(["ipsec", "pluto", "--config", "/etc/ipsec.conf", "--nofork", "--stderrlog"], "/var/log/pluto.log")
        argv = ["ipsec", "whack", "--status"]
    while node.exec(argv, timeout=60).rc != 0:
        if time.perf_counter() - t0 > 60:
            return float("nan")
        time.sleep(0.05)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runtime", action="append", default=[])
    ap.add_argument("--daemon", action="store_true")
    args = ap.parse_args()
    runtimes = args.runtime or ["docker", "uml"]
    run = labels.new_run_id()
    os.environ[labels.RUN_ENV] = run
    labels.register_owner(run)
    ns = labels.resource_name(run, 0, "bench")
    subprocess.run(["ip", "netns", "add", ns], check=True)
    ready: dict[tuple[str, str], float] = {}
    try:
        for info in images.built_images():
            for rt_name in runtimes:
                rt = get_runtime(rt_name)
                why = rt.unavailable()
                if why:
                    print(f"{rt_name}: skipped ({why})")
                    continue
                starts, stops, rtts, mem, used, daemon = [], [], [], [], [], []
                for i in range(args.rounds):
                    links = [LinkSpec("eth0", "02:49:00:00:bb:00", f"b{i}.0"), LinkSpec("eth1", "02:49:00:00:bb:ff", f"b{i}.m")]
                    t0 = time.perf_counter()
                    node = rt.start(NodeSpec(f"b{i}", info.name, info.peer), ns, links)
                    starts.append(time.perf_counter() - t0)
                    try:
                        for _ in range(20):
                            rtts.append(node.ping())  # type: ignore[attr-defined]
                        if args.daemon:
                            daemon.append(start_daemon(node, info.peer))
                        used.append(guest_used_mib(node))
                        mem.append(node.memory_kib() / 1024 if rt_name == "uml" else container_mib(node))  # type: ignore[attr-defined]
                    finally:
                        t0 = time.perf_counter()
                        node.stop()
                        stops.append(time.perf_counter() - t0)
                ready[(info.name, rt_name)] = med(starts)
                what = "host PSS" if rt_name == "uml" else "cgroup"
                line = (f"{info.name:15} {rt_name:6} start->ready {med(starts) * 1e3:7.0f} ms  stop {med(stops) * 1e3:6.0f} ms  "
                        f"exec rtt {med(rtts) * 1e6:5.0f} us  {what} {med(mem):6.1f} MiB")
                if rt_name == "uml":
                    line += f"  guest-used {med(used):5.1f} MiB"
                if daemon:
                    line += f"  daemon ready {med(daemon) * 1e3:6.0f} ms"
                print(line, flush=True)
        for info in images.built_images():
            if (info.name, "docker") in ready and (info.name, "uml") in ready:
                print(f"{info.name:15} uml/docker start->ready ratio {ready[(info.name, 'uml')] / ready[(info.name, 'docker')]:5.1f}")
    finally:
        subprocess.run(["ip", "netns", "delete", ns], check=False)
        labels.release_owner(run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
