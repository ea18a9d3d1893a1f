"""Live: make fresh kernel captures with harness/tools/make_kernel_captures.py (UML guest) and decrypt them.

Needs root (the guest loads modules, makes namespaces) and the exported UML kernel (`ipsec-interop setup`); about
15 s for the two scenarios run here. The committed captures in vectors/captures are checked
without either by test_kernel_captures.py.
"""
from __future__ import annotations

import json

import pytest

from harness.cli import main
from harness.runtime import uml_kernel
from harness.tools import make_kernel_captures

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(uml_kernel.exported() is None, reason="needs the UML kernel (`ipsec-interop setup` exports it)")]

SCENARIOS = ["esp-aes-gcm-16-128-transport-v4", "ah-sha256-tunnel-v6"]


def test_fresh_kernel_captures_decrypt(tmp_path, capsys):
    argv = ["--out", str(tmp_path), "--timeout", "180"]
    for s in SCENARIOS:
        argv += ["--only", s]
    assert make_kernel_captures.main(argv) == 0, capsys.readouterr().err
    manifest = json.loads((tmp_path / "manifest.json").read_text())["captures"]
    assert sorted(manifest) == sorted(SCENARIOS)
    capsys.readouterr()
    for name, entry in manifest.items():
        assert entry["kernel"].split()[0] == uml_kernel.current().release
        assert main(["decrypt", "--keys", str(tmp_path / entry["keys"]), str(tmp_path / entry["file"]), "--json"]) == 0
        rep = json.loads(capsys.readouterr().out)
        assert rep["packets"] == 6 and rep["failed"] == 0
        assert rep["decrypted" if name.startswith("esp") else "verified"] == 6
