"""What driving the reference peers costs: daemon start, loading a connection, negotiating, tearing down.

    sudo python3 benchmarks/bench_peers.py [--rounds 5] [--left strongswan-5.9] [--right libreswan-4.10]

Builds the p2p lab once (UML guests), starts both daemons, then per round: load the connection on both
ends (strongSwan: load-shared + load-conn over vici/TCP; Libreswan: files + addconn + rereadsecrets),
initiate from the left, terminate, unload. Prints medians per step and per implementation, and the ratio
of Libreswan's load (its responder setup) to strongSwan's load-conn, and of initiating from each side.
All numbers come from this run; nothing is asserted.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.lab import Lab, peering  # noqa: E402
from harness.peers import connection_from_dict, mirrored  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--left", default="strongswan-5.9")
    ap.add_argument("--right", default="libreswan-4.10")
    ap.add_argument("--runtime", default="uml")
    args = ap.parse_args()
    times: dict[str, list[float]] = {}

    def timed(key: str, fn, *a, **kw):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        r = fn(*a, **kw)
        times.setdefault(key, []).append(time.perf_counter() - t0)
        return r

    with Lab("p2p") as lab:
        lab.build()
        t0 = time.perf_counter()
        peers = {n: peering.start_peer(lab, n, p, args.runtime, None) for n, p in (("left", args.left), ("right", args.right))}
        boot = time.perf_counter() - t0
        try:
            for n, h in peers.items():  # start_peer started the daemons: time a restart (stop by pid, start, ready)
                h.adapter.stop()
                time.sleep(1)
                timed(f"{h.name} daemon (re)start to ready", h.adapter.start)
            base = {"name": "p2p", "auth": {"psk": "bench-psk-0123456789abcdef"}}
            for _ in range(args.rounds):
                for ini, res in (("left", "right"), ("right", "left")):
                    c = connection_from_dict({**base, "local_addr": lab.node(ini).address(), "remote_addr": lab.node(res).address()})
                    I, R = peers[ini], peers[res]
                    timed(f"{R.name} load (responder)", R.adapter.load, mirrored(c))
                    timed(f"{I.name} load (initiator)", I.adapter.load, c)
                    timed(f"{I.name} initiate -> {R.name}", I.adapter.initiate, "p2p")
                    timed(f"{I.name} list_sas", I.adapter.list_sas)
                    timed(f"{I.name} terminate", I.adapter.terminate, "p2p")
                    for h in (I, R):
                        timed(f"{h.name} unload", h.adapter.unload, "p2p")
        finally:
            for h in peers.values():
                h.adapter.stop()
                h.stop()
    print(f"two UML guests booted and configured: {boot:.2f} s (runtime {args.runtime})")
    for k, v in times.items():
        print(f"{k:48s} median {statistics.median(v) * 1e3:8.1f} ms  (n={len(v)})")
    med = {k: statistics.median(v) for k, v in times.items()}
    ls = next((v for k, v in med.items() if k.startswith("libreswan") and "responder" in k), None)
    ss = next((v for k, v in med.items() if k.startswith("strongswan") and "responder" in k), None)
    if ls and ss:
        print(f"Libreswan responder load / strongSwan responder load-conn: {ls / ss:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
