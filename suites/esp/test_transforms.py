"""Every ESP transform through each peer's kernel (RFC 4303 with the transform's own RFC), one table row a case.

Rows of transforms.json run with the built-in end initiating to the peer (the peer's kernel is what is under test;
its daemon only negotiates): the Child SA of the row's transform and mode carries echo requests both ways, judged
by both ends' SA counters; after the case the wire check opens every ESP packet with the keys both ends reported:
the SPI the peer negotiated, sequence numbers from 1 up and never reused, the ICV, Padding and Pad Length
(RFC 4303 s2.4), the Next Header (4 or 41 in tunnel mode, matching the inner packet), and no IV repeated under
one key. A transform the peer's own algorithm list lacks is UNIMPLEMENTED before anything is loaded.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.cases.table import table_params

pytestmark = [pytest.mark.lab, pytest.mark.root]
TABLE = Path(__file__).with_name("transforms.json")


@pytest.mark.parametrize("row", table_params(TABLE))
def test_esp_transform_carries_traffic_both_ways(pair, row):
    """The row's transform, mode and IP version (its id's suffix) carry traffic both ways through the peer's kernel."""
    pair.expect(row, pair.from_row(row, 6 if row.id.endswith("-ipv6") else 4))
    pair.traffic(count=3)
    pair.terminate()
