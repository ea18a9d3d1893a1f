"""Verdicts against the real peers, end to end: cases run in a child pytest (suites/lab/verdict_cases) and their
records are read back. A wrong PSK is FAILED naming AUTHENTICATION_FAILED (never BROKEN), in both roles; AH with
AES-GMAC, which Libreswan lacks, is UNIMPLEMENTED there; a packet whose ICV the built-in sender corrupted makes
the wire check fail the case."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.lab import fixtures, labels

pytestmark = [pytest.mark.lab, pytest.mark.root]
CASES = Path(__file__).with_name("verdict_cases") / "case_verdicts.py"


@pytest.fixture(scope="module")
def records(request, tmp_path_factory):
    peers, unusable = fixtures.selected_peers(request.config)
    peers = [p for p in peers if p not in unusable]
    if not peers:
        pytest.skip(unusable.get("", "no peer built"))
    out = tmp_path_factory.mktemp("verdicts")
    argv = [sys.executable, "-m", "pytest", str(CASES), "-p", "no:cacheprovider", "-q",
            f"--results-json={out / 'results.json'}", f"--capture-dir={out}",
            f"--runtime={request.config.getoption('--runtime')}", *[f"--peer={p}" for p in peers]]
    env = {**os.environ, labels.RUN_ENV: labels.new_run_id()}  # a run of its own: its labs' names must not clash with ours
    run = subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd=request.config.rootpath, env=env)
    path = out / "results.json"
    assert path.exists(), f"the child pytest wrote no results (exit {run.returncode}):\n{run.stdout[-3000:]}{run.stderr[-2000:]}"
    return {r["nodeid"].split("::", 1)[1]: r for r in json.loads(path.read_text())}, peers


def test_a_wrong_psk_is_failed_naming_authentication_failed(records):
    got, peers = records
    for p in peers:
        for pair in (f"builtin>{p}", f"{p}>builtin"):
            r = got[f"test_wrong_psk[{pair}]"]
            assert r["verdict"] == "FAILED", (pair, r["verdict"], r["message"][-1500:])
            assert "AUTHENTICATION_FAILED" in r["message"] and "RFC 7296 s2.15 MUST" in r["message"], r["message"][-1500:]
            assert any(a.endswith("keys.json") for a in r["artifacts"]) and any(a.endswith(".pcap") for a in r["artifacts"])


def test_a_transform_the_peer_lacks_is_unimplemented(records):
    got, peers = records
    lsw = [p for p in peers if p.startswith("libreswan")]
    if not lsw:
        pytest.skip("needs a Libreswan peer (the one that lacks AH with AES-GMAC)")
    for p in lsw:
        r = got[f"test_ah_gmac[builtin>{p}]"]
        assert r["verdict"] == "UNIMPLEMENTED", (p, r)
        assert "AES_128_GMAC" in r["message"] and "whack --status" in r["message"], r["message"]  # named, with the list read


def test_a_corrupted_packet_fails_the_wire_check(records):
    got, peers = records
    for p in peers:
        r = got[f"test_corrupted_packet_on_the_wire[builtin>{p}]"]
        assert r["verdict"] == "FAILED", (p, r["verdict"], r["message"][-1500:])
        assert "wire check: 1 problem" in r["message"] and "does not decrypt/verify" in r["message"], r["message"][-1500:]
