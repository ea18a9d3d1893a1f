"""UDP and TCP through the peer's kernel both ways, small, at the path MTU, one octet over and 3000 octets, in
transport and tunnel mode over IPv4 and IPv6 (RFC 4303 s3.3.4, s3.4.1; traffic.json, one row a case).

The built-in end and the peer's guest exchange the row's flows (harness/cases/flows.py); every flow must come back
through the Child SA, decrypted by the built-in end and counted by the peer's inbound SA. What each flow measured
(which end fragmented, before or after ESP) goes to flows.json beside the case's capture.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.cases.flows import Flows
from harness.cases.hostflows import HostFlows
from harness.cases.table import row_params
from harness.datafile import load_json

pytestmark = [pytest.mark.lab, pytest.mark.root]

TABLE_FILE = Path(__file__).with_name("traffic.json")
TABLE = load_json(TABLE_FILE)  # its flows and host_flows; the rows by row_params
PROPOSAL = "aes128gcm16"


def _rows() -> list[Any]:
    return row_params(TABLE_FILE, {"mode", "version", "flows"})


def _record(pair: Any, measured: list[dict[str, Any]], record_property: Any) -> None:
    """What each flow measured, to flows.json beside the capture and to the case's record."""
    pair.directory.mkdir(parents=True, exist_ok=True)
    (pair.directory / "flows.json").write_text(json.dumps(measured, indent=1) + "\n")
    record_property("flows", json.dumps(measured))


@pytest.mark.parametrize("row", _rows())
def test_udp_and_tcp_of_every_size_cross_the_child_sa(pair, row, record_property):
    pair.establish(pair.connection(version=row["version"], mode=row["mode"], child_proposals=[PROPOSAL]))
    with Flows(pair) as flows:
        _record(pair, [flows.run(flow) for flow in row.get("flows", TABLE["flows"])], record_property)
    pair.terminate()


def _host_rows() -> list[Any]:
    return row_params(TABLE_FILE, {"version"}, section="host_rows")


@pytest.mark.topology("tunnel")
@pytest.mark.parametrize("row", _host_rows())
def test_udp_and_tcp_between_hosts_behind_the_gateways(pair, row, record_property):
    pair.establish(pair.connection(version=row["version"], hosts=True, child_proposals=[PROPOSAL]))
    with HostFlows(pair) as flows:
        _record(pair, [flows.run(flow) for flow in TABLE["host_flows"]], record_property)
    pair.terminate()
