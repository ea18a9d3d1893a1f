"""Wireshark (tshark) as an independent judge: it must decrypt what we export keys for, with no errors.

Kernel captures (vectors/captures) are decoded with the esp_sa table written by
harness.keys; the built-in stack's own ESP packets are checked the same way in
test_tshark_builtin_stack below. Wireshark 4.0 lacks ChaCha20-Poly1305 (4.2+), AES-CCM,
AES-GMAC and AES-XCBC, and checks no AH ICVs: those cases skip naming the reason.
"""
from __future__ import annotations

import json

import pytest

from harness.keys import load_keys
from harness.keys.wireshark import wireshark_supports
from harness.vectors import VECTORS_DIR

from harness.tools.tshark import problems, tshark_path, tshark_rows

pytestmark = [pytest.mark.tshark, pytest.mark.skipif(tshark_path() is None, reason="tshark not installed")]

CAPTURES = VECTORS_DIR / "captures"
MANIFEST = json.loads((CAPTURES / "manifest.json").read_text())["captures"]


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_tshark_decrypts_kernel_capture(name):
    entry = MANIFEST[name]
    sas = load_keys(CAPTURES / entry["keys"]).ipsec_sas
    ah = sas[0].protocol == "ah"
    why = wireshark_supports(sas[0])
    if why and not ah:
        pytest.skip(f"Wireshark 4.0: {why}")
    rows, skipped = tshark_rows(CAPTURES / entry["file"], sas)
    assert len(skipped) == (2 if ah else 0)  # AH: dissected in the clear, its ICV is not checked by Wireshark
    assert len(rows) == entry["expected"]["packets"]
    payload = entry["echo"]["payload"]
    for row in rows:
        assert not problems(row), (row["frame.number"], problems(row))
        assert row["esp.icv_good"] == ([] if ah else ["1"])
        assert payload in row["data.data"], f"frame {row['frame.number']}: inner ICMP payload not decrypted"
        assert (row["icmp.type"] or row["icmpv6.type"])[-1] in ("8", "0", "128", "129")
