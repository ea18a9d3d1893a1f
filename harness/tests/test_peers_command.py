"""`ipsec-interop peers` on this machine: every built peer listed with its version, and the runtime auto picks."""
from __future__ import annotations

import pytest

from harness.cli import main
from harness.runtime import images


def test_peers_lists_what_is_built_and_the_auto_runtime(capsys) -> None:
    built = images.built_images()
    rc = main(["peers"])
    out = capsys.readouterr().out
    if not built and "peers (" not in out:
        assert rc == 1 and "ipsec-interop setup" in out
        pytest.skip("no peer is built here (no Docker images nor exported UML trees): nothing to list")
    assert rc == 0
    for info in built:
        assert f"{info.name:16} {info.version}" in out
    assert "runtime auto -> " in out and "external (--profile FILE)" in out
