"""Per-case overhead of the case framework with pooled peers: load, evidence snapshot, unload, capture, wire check.

    sudo python3 benchmarks/bench_cases.py [--rounds 10] [--peer strongswan-5.9 ...] [--runtime uml]

For each peer and both roles against the built-in stack (and each strongSwan/Libreswan pair both ways), a
case of the connections table (ESP transport, AES-GCM) runs `rounds` times on one pooled lab: establish,
one echo each way, terminate. Printed per pair: the median and maximum of the framework's own work per case
(load both ends, snapshot keys and counters, unload and wait for a clean peer, stop the capture and write the
keys, the strict wire check), the share of each part, and the ratio of that overhead to the whole case.
All numbers come from this run; nothing is asserted.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.cases.ends import BUILTIN, pair_specs  # noqa: E402
from harness.cases.pair import End, Pair  # noqa: E402
from harness.lab.fixtures import LabPool  # noqa: E402
from harness.runtime import images  # noqa: E402

PARTS = ("load", "snapshot", "unload", "capture", "wire_check")


def one_case(env, spec, directory: Path) -> tuple[dict[str, float], float]:
    """Run one case; (framework timings by part, whole case seconds)."""
    nodes = spec.nodes()
    ends = {n: End(n, node, env.builtin_end()) if n == BUILTIN else End(n, node, env.peers[node].adapter, env.peers[node].node)
            for n, node in nodes.items()}
    t0 = time.perf_counter()
    capture = env.lab.capture(directory)
    pair = Pair(spec, env.lab, ends, capture, directory)
    pair.establish(pair.connection())
    pair.traffic(count=1)
    pair.terminate()
    pair.finish(failed=False)
    return dict(pair.evidence.timings), time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--peer", action="append", default=[])
    ap.add_argument("--runtime", default="uml")
    ap.add_argument("--peer-pairs", action="store_true", help="also strongSwan <-> Libreswan pairs")
    args = ap.parse_args()
    peers = args.peer or images.built_peers()
    kinds = ("builtin>peer", "peer>builtin", *(("peer>peer",) if args.peer_pairs else ()))
    pool = LabPool(args.runtime, None, keep=False)
    overall: list[float] = []
    shares = dict.fromkeys(PARTS, 0.0)
    print(f"{'pair':38} {'overhead median':>15} {'max':>7} {'case median':>11} {'overhead/case':>13}  " +
          " ".join(f"{p:>10}" for p in PARTS))
    try:
        with tempfile.TemporaryDirectory(prefix="ipsi-bench-") as tmp:
            for spec in pair_specs(peers, kinds, "direct"):
                env = pool.get(spec.lab_topology, {node: n for n, node in spec.nodes().items() if n != BUILTIN})
                one_case(env, spec, Path(tmp) / "warm")  # the first case after a boot pays for caches
                per, whole = [], []
                parts = {p: [] for p in PARTS}
                for i in range(args.rounds):
                    t, w = one_case(env, spec, Path(tmp) / f"{spec.id}-{i}")
                    per.append(sum(t.get(p, 0.0) for p in PARTS))
                    whole.append(w)
                    for p in PARTS:
                        parts[p].append(t.get(p, 0.0))
                overall += per
                for p in PARTS:
                    shares[p] += sum(parts[p])
                print(f"{spec.id:38} {statistics.median(per):13.3f} s {max(per):6.3f}s {statistics.median(whole):9.3f} s "
                      f"{statistics.median(per) / statistics.median(whole):12.0%}  " +
                      " ".join(f"{statistics.median(parts[p]):9.3f}s" for p in PARTS), flush=True)
    finally:
        pool.close()
    total = sum(shares.values()) or 1.0
    print(f"\nall pairs: overhead median {statistics.median(overall):.3f} s over {len(overall)} cases (target < 0.3 s); "
          "share: " + ", ".join(f"{p} {shares[p] / total:.0%}" for p in PARTS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
