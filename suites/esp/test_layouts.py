"""The ESP layouts (RFC 4303 s3.1) between every pair of ends: transport and tunnel mode over IPv6, and
tunnel mode carrying IPv4 inside IPv6 and IPv6 inside IPv4 (RFC 4301 s5.1.2.1), each with AES-GCM and with
AES-CBC/HMAC-SHA2-256 (layouts.json).

A 4-in-6 row's Child SA runs between the gateways' IPv6 addresses with the two gateways' own IPv4 addresses as its
selectors (each end has both families on its interface), so an echo request from one's IPv4 address to the other's
goes through the IPv6 SA; the ping of each end (the built-in end's, the guest's `ping -4`) takes the selectors'
family. Traffic is judged by both ends' SA counters; the wire check then opens every ESP packet, its tunnel-mode
Next Header (4 or 41) matching the inner packet's version.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.cases.table import table_params

pytestmark = [pytest.mark.lab, pytest.mark.root]
TABLE = Path(__file__).with_name("layouts.json")
LAYOUTS = {"ipv4": (4, 4), "ipv6": (6, 6), "4in6": (6, 4), "6in4": (4, 6)}  # id suffix -> (outer, inner) IP version


@pytest.mark.parametrize("row", table_params(TABLE))
def test_esp_layout_carries_traffic_both_ways(pair, row):
    """The row's mode, outer and inner IP versions (its id's suffix) carry traffic both ways."""
    outer, inner = LAYOUTS[row.id.rsplit("-", 1)[1]]
    pair.expect(row, pair.from_row(row, outer, inner))
    pair.traffic(count=3)
    pair.terminate()
