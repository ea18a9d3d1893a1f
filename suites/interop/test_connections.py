"""Every pair of ends establishes the basic connections of connections.json and carries traffic both ways.

Rows are data (id, requirement, connection); each runs between the built-in stack and each peer in both
roles and between strongSwan and Libreswan both ways. Traffic is judged by both ends' SA counters and by
the wire check on the decrypted capture, not by ping's exit status.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.cases.table import table_params

pytestmark = [pytest.mark.lab, pytest.mark.root]
TABLE = Path(__file__).with_name("connections.json")


@pytest.mark.parametrize("row", table_params(TABLE))
def test_connection_carries_traffic(pair, row):
    pair.expect(row)
    pair.traffic(count=3)
    pair.terminate()
