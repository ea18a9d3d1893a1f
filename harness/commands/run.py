"""`ipsec-interop run`: the interop suites against the reference peers, ending in the matrix report."""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from harness.errors import ConfigError
from harness.commands.report import write_reports

DEFAULT_SUITES = ("suites",)
DEFAULT_MARKER = "lab"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--peer", action="append", default=[], help="peer to test (repeatable; default: every built peer)")
    p.add_argument("--runtime", default=None, help="auto, docker, uml or external (default: auto)")
    p.add_argument("--profile", default=None, help="external device profile (with --runtime external)")
    p.add_argument("-n", "--workers", default="auto",
                   help="pytest-xdist workers, each with its own guests (0: in process; default auto: one more than the "
                        "cores, at most 4, or IPSEC_INTEROP_WORKERS)")
    p.add_argument("-m", "--marker", default=DEFAULT_MARKER, help=f"pytest marker expression (default: {DEFAULT_MARKER})")
    p.add_argument("-k", dest="keyword", default=None, help="pytest -k expression: only the cases it selects")
    p.add_argument("--shard", default=None, metavar="K/N", help="run shard K of N of the cases (harness.shard); "
                   "join the shards' folders with `ipsec-interop report merge`")
    p.add_argument("--shard-durations", default=None, metavar="RESULTS_JSON",
                   help="balance the shards by the durations of an earlier run's results.json")
    p.add_argument("--out", default="reports", help="report directory (default: reports)")
    p.add_argument("suites", nargs="*", default=list(DEFAULT_SUITES), help="suite paths (default: suites)")


def pytest_argv(args: argparse.Namespace, out: Path) -> list[str]:
    """The pytest command line for these options."""
    argv = [sys.executable, "-m", "pytest", *args.suites, "-m", args.marker, "-p", "no:cacheprovider",
            f"--results-json={out / 'results.json'}", f"--junitxml={out / 'junit-interop.xml'}",
            f"--alluredir={out / 'allure-results'}", "--clean-alluredir", "--progress"]
    for peer in args.peer:
        argv.append(f"--peer={peer}")
    if args.runtime:
        argv.append(f"--runtime={args.runtime}")
    if args.profile:
        argv.append(f"--profile={args.profile}")
    for opt, value in (("-k", args.keyword), ("--shard", args.shard), ("--shard-durations", args.shard_durations)):
        if value:
            argv += [opt, value]
    if args.workers not in ("0", ""):
        argv += ["-n", args.workers, "--dist", "loadgroup"]
    return argv


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    for s in args.suites:
        if not Path(s).exists():
            raise ConfigError(f"suite path {s!r} does not exist")
    results = out / "results.json"
    results.unlink(missing_ok=True)
    shutil.rmtree(out / "details", ignore_errors=True)
    rc = subprocess.call(pytest_argv(args, out))
    if not results.exists():
        raise ConfigError(f"pytest (exit {rc}) wrote no results to {results}: see its output above")
    write_reports(out, table=True)
    if rc == 5:
        print("ipsec-interop run: no test was selected: are the peers built (`ipsec-interop setup`)?", file=sys.stderr)
        return 1
    return rc
