"""Smoke test, one per peer: the built-in initiator brings up an IKE SA and an ESP transport Child SA with the
peer, echo requests cross the Child SA both ways (the tester's side in the built-in ESP code, the peer's in its
kernel), both ends count them and the decrypted capture shows them (the pair fixture's wire check)."""
from __future__ import annotations

import pytest

pytestmark = [pytest.mark.smoke, pytest.mark.lab, pytest.mark.root]


@pytest.mark.ends("builtin>peer")
@pytest.mark.rfc(7296, "1.2", "MUST")
@pytest.mark.rfc(4303, "3.1.1", "MUST")
def test_ike_sa_esp_transport_child_sa_and_traffic_both_ways(pair):
    pair.establish(pair.connection(mode="transport"))
    pair.traffic(count=2)
