"""Lab set-up and tear-down cost per topology, and the per-test cost when a lab (and its peers) is reused.

    sudo python3 benchmarks/bench_lab.py [--rounds 5]

Prints, per topology: namespaces, bridges and veth pairs created; median build and teardown times;
the per-test overhead of a reused lab (tester socket drain + capture begin/end + keys.json), which is
what a test pays once its worker's peers run; and the ratio of that to a full build+teardown.
Also, for one namespace, `ip netns add` against pyroute2's netns.create, and AF_PACKET socket()
with ETH_P_ALL against protocol 0 then bind(): the measurements behind the choices in harness/lab.
All numbers come from this run; nothing is asserted.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.lab import Lab, labels, netns, topologies  # noqa: E402


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1e3:7.1f} ms"


def bench_topology(name: str, rounds: int, tmp: Path) -> None:
    builds, teardowns, per_test = [], [], []
    for _ in range(rounds):
        lab = Lab(name, run=labels.new_run_id(), worker=0)
        lab.build()
        for i in range(rounds):
            t0 = time.perf_counter()
            assert lab.tester is not None
            lab.tester.drain()
            cap = lab.capture(tmp / f"{name}-{i}")
            cap.stop(keys=[])
            per_test.append(time.perf_counter() - t0)
        lab.close()
        builds.append(lab.timings["build"])
        teardowns.append(lab.timings["teardown"])
    veths = sum(len(n.interfaces) for n in lab.nodes.values() if n.netns)
    full = statistics.median(builds) + statistics.median(teardowns)
    print(f"{name:11s} netns {len(lab.namespaces)}  bridges {len(lab.bridges)}  veths {veths}  build {ms(builds)}"
          f"  teardown {ms(teardowns)}  per-test (reused) {ms(per_test)}  full/per-test {full / statistics.median(per_test):6.0f}x")


def bench_choices(rounds: int) -> None:
    from pyroute2 import netns as pr_netns

    run = labels.new_run_id()
    ip_add, pr_add = [], []
    for i in range(rounds):
        name = labels.resource_name(run, "bench", i)
        t0 = time.perf_counter()
        subprocess.run(["ip", "netns", "add", name], check=True)
        ip_add.append(time.perf_counter() - t0)
        netns.delete(name)
        t0 = time.perf_counter()
        pr_netns.create(name)
        pr_add.append(time.perf_counter() - t0)
        netns.delete(name)
    print(f"namespace create: ip netns add {ms(ip_add)}, pyroute2 netns.create {ms(pr_add)}"
          f"  ratio {statistics.median(pr_add) / statistics.median(ip_add):.1f}x")
    lab = Lab("direct", run=run, worker=0).build()
    eth_all, proto0 = [], []

    def open_close(proto_at_socket: bool) -> float:
        t0 = time.perf_counter()
        if proto_at_socket:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
        else:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        s.bind(("br-net", 3))
        t = time.perf_counter() - t0
        s.close()
        return t

    for _ in range(rounds):
        eth_all.append(netns.run_in(lab.name, open_close, True))
        proto0.append(netns.run_in(lab.name, open_close, False))
    lab.close()
    print(f"AF_PACKET open: socket(ETH_P_ALL) {ms(eth_all)}, socket(0)+bind(ETH_P_ALL) {ms(proto0)}"
          f"  ratio {statistics.median(eth_all) / statistics.median(proto0):.0f}x")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    if os.geteuid() != 0:
        print("bench_lab: needs root (network namespaces)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        for name in topologies():
            bench_topology(name, args.rounds, Path(tmp))
    bench_choices(args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
