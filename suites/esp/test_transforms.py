"""Every ESP transform through each peer's kernel (RFC 4303 with the transform's own RFC), one table row a case.

Rows of transforms.json run with the built-in end initiating to the peer (the peer's kernel is what is under test;
its daemon only negotiates): the peer's kernel must hold the Child SA's two ESP states with the transform and key
lengths negotiated (its algorithm lines are recorded as `peer_kernel_algorithms`), and the Child SA of the row's
transform and mode carries echo requests both ways, judged by both ends' SA counters; after the case the wire check
opens every ESP packet with the keys both ends reported: the SPI the peer negotiated, sequence numbers from 1 up and
never reused, the ICV, Padding and Pad Length (RFC 4303 s2.4), the Next Header (4 or 41 in tunnel mode, matching
the inner packet), and no IV repeated under one key. A transform the peer's own algorithm list lacks is
UNIMPLEMENTED before anything is loaded.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.cases.table import table_params
from harness.errors import PeerFault
from harness.peers.base import sa_keys

pytestmark = [pytest.mark.lab, pytest.mark.root]
TABLE = Path(__file__).with_name("transforms.json")


@pytest.mark.parametrize("row", table_params(TABLE))
def test_esp_transform_carries_traffic_both_ways(pair, row, record_property):
    """The row's transform, mode and IP version (its id's suffix) carry traffic both ways through the peer's kernel."""
    pair.expect(row, pair.from_row(row, 6 if row.id.endswith("-ipv6") else 4))
    child = pair.child(pair.peer)
    states = [s for s in pair.peer.adapter.xfrm_state() if s.proto == "esp" and s.spi in (child.spi_in, child.spi_out)]
    record_property("peer_kernel_algorithms", "; ".join(sorted({f"{a.kind} {a.name} {a.bits or ''}".strip()
                                                                 for s in states for a in s.algorithms})))
    held, agreed = ({(k.spi, k.encryption, len(k.encryption_key), k.integrity) for k in keys if k.protocol == "esp"
                     and k.spi in (child.spi_in, child.spi_out)} for keys in (sa_keys(states), pair.builtin.sa_keys()))
    if held != agreed or len(held) != 2:
        raise PeerFault(f"{pair.peer.name}'s kernel holds {sorted(held)} for the Child SA, negotiated: {sorted(agreed)} "
                        f"(SPI, transform, key octets, integrity)", str(row.requirement))
    pair.traffic(count=3)
    pair.terminate()
