"""Wireshark (tshark 4.0) decrypts the built-in endpoints' IKE_AUTH/CREATE_CHILD_SA with our ikev2_decryption_table.

A cross-check of three things at once: the SK encoding on the wire, the key schedule, and the
exported IKE SA keys (harness.ike.export). Needs tshark.
"""
from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

import pytest

from harness.esp.ip import addr_bytes, ipv4_header
from harness.ike.auth import Identity
from harness.ike.config import IkeConfig
from harness.ike.endpoint import IkeEndpoint
from harness.ike.loopback import FakeClock, Wire, seeded_rng
from harness.ike.proposals import parse_proposals
from harness.tools.pcapio import write_pcap
from harness.tools.tshark import tshark_path

A, B = ("198.18.0.1", 500), ("198.18.0.2", 500)
pytestmark = [pytest.mark.tshark, pytest.mark.skipif(tshark_path() is None, reason="tshark is not installed")]


def _frame(src, dst, payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
    return ipv4_header(addr_bytes(src[0]), addr_bytes(dst[0]), 17, len(udp)) + udp


@pytest.mark.parametrize("ike", ["aes128-sha256-modp2048", "aes256gcm16-prfsha384-ecp256", "aes192-sha512-ecp384"])
def test_tshark_decrypts_ike_with_exported_keys(tmp_path: Path, ike: str):
    def cfg(side):
        return IkeConfig(local_id=Identity.of(f"{side}.example"), psk=b"wireshark PSK",
                         ike_proposals=parse_proposals(ike, "ike"), child_proposals=parse_proposals("aes128gcm16", "esp"))
    clock = FakeClock()
    a, b = IkeEndpoint(cfg("moon"), A, clock, seeded_rng(3)), IkeEndpoint(cfg("sun"), B, clock, seeded_rng(4))
    w = Wire(a, b)
    w.run(a.initiate(B))
    w.run(a.create_child(a.established()[0]))
    pcap = tmp_path / "ike.pcap"
    write_pcap(pcap, [(i * 1000, _frame(d.src, d.dst, d.data)) for i, d in enumerate(w.log)])
    ws = tmp_path / "cfg" / "wireshark"
    ws.mkdir(parents=True)
    (ws / "ikev2_decryption_table").write_text(a.established()[0].ike_keys.wireshark_line() + "\n")
    fields = ("frame.number", "isakmp.exchangetype", "isakmp.typepayload", "isakmp.id.data.fqdn", "isakmp.auth.method",
              "_ws.malformed", "_ws.expert.severity")
    argv = [tshark_path(), "-n", "-r", str(pcap), "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a",
            "-E", "aggregator=|"] + [x for f in fields for x in ("-e", f)]
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "cfg"), HOME=str(tmp_path))
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=True).stdout
    rows = [dict(zip(fields, line.split("\t"))) for line in out.splitlines()]
    assert len(rows) == 6
    auth_req, auth_resp = rows[2], rows[3]
    for row, ident in ((auth_req, "moon.example"), (auth_resp, "sun.example")):
        types = set(row["isakmp.typepayload"].split("|"))
        assert {"35", "39", "33", "44", "45"} <= types or {"36", "39", "33", "44", "45"} <= types, row
        assert row["isakmp.id.data.fqdn"] == ident and row["isakmp.auth.method"] == "2"
    child_types = set(rows[4]["isakmp.typepayload"].split("|"))
    assert {"33", "40", "44", "45"} <= child_types  # CREATE_CHILD_SA: SA, Nonce, TSi, TSr decrypted
    assert not any(r["_ws.malformed"] for r in rows)
