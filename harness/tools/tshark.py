"""Run tshark over a capture with Wireshark tables (esp_sa written by harness.keys, ikev2_decryption_table) in a throw-away config dir; needs tshark."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from harness.keys import IpsecSaKeys, dump_esp_sa

PI_ERROR = 8388608  # Wireshark expert severity "Error" (epan/proto.h PI_ERROR)
FIELDS = ("frame.number", "esp.spi", "esp.icv_good", "esp.icv_bad", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst",
          "icmp.type", "icmpv6.type", "data.data", "_ws.malformed", "_ws.expert.severity")


def tshark_path() -> str | None:
    """The tshark binary, or None."""
    return shutil.which("tshark")


def tshark_rows(pcap: str | Path, sas: list[IpsecSaKeys]) -> tuple[list[dict[str, list[str]]], list[str]]:
    """(one dict field -> values per frame, the SAs left out of esp_sa and why) for pcap decoded with sas."""
    with tempfile.TemporaryDirectory(prefix="ipsec-interop-tshark-") as cfg:
        ws = Path(cfg) / "wireshark"
        ws.mkdir()
        skipped = dump_esp_sa(sas, ws / "esp_sa")
        (ws / "preferences").write_text("esp.enable_encryption_decode: TRUE\nesp.enable_authentication_check: TRUE\n")
        argv = [tshark_path() or "tshark", "-n", "-r", str(pcap), "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a",
                "-E", "aggregator=|"]
        for f in FIELDS:
            argv += ["-e", f]
        env = dict(os.environ, XDG_CONFIG_HOME=cfg, HOME=cfg)
        out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=True).stdout
    rows = []
    for line in out.splitlines():
        values = line.split("\t")
        rows.append({f: [x for x in v.split("|") if x] for f, v in zip(FIELDS, values)})
    return rows, skipped


def problems(row: dict[str, list[str]]) -> list[str]:
    """Malformed-packet marks and expert errors of one frame."""
    out = []
    if row.get("_ws.malformed"):
        out.append("malformed packet")
    out += [f"expert severity {s}" for s in row.get("_ws.expert.severity", []) if int(s) >= PI_ERROR]
    if row.get("esp.icv_bad") and "1" in row["esp.icv_bad"]:
        out.append("ESP ICV bad")
    return out


IKE_FIELDS = ("frame.number", "isakmp.exchangetype", "isakmp.typepayload", "isakmp.frag.number", "esp.spi",
              "_ws.malformed", "_ws.expert.severity", "_ws.expert.message")


def tshark_ike_rows(pcap: str | Path, tables: dict[str, list[str]]) -> list[dict[str, list[str]]]:
    """One dict field -> values per frame of pcap, dissected with the given Wireshark tables (file name -> lines)."""
    with tempfile.TemporaryDirectory(prefix="ipsec-interop-tshark-") as cfg:
        ws = Path(cfg) / "wireshark"
        ws.mkdir()
        for name, lines in tables.items():
            (ws / name).write_text("".join(x + "\n" for x in lines))
        (ws / "preferences").write_text("esp.enable_encryption_decode: TRUE\nesp.enable_authentication_check: TRUE\n")
        argv = [tshark_path() or "tshark", "-n", "-r", str(pcap), "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a",
                "-E", "aggregator=|"] + [x for f in IKE_FIELDS for x in ("-e", f)]
        env = dict(os.environ, XDG_CONFIG_HOME=cfg, HOME=cfg)
        out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=True).stdout
    return [{f: [x for x in v.split("|") if x] for f, v in zip(IKE_FIELDS, line.split("\t"))} for line in out.splitlines()]
