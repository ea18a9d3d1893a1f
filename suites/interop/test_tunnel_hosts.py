"""Tunnel mode between gateways with a host behind each (RFC 4301 s4.1, RFC 4303 s3.1.2): the hosts reach each
other only through the Child SA; both gateways' counters and the decrypted wire show their traffic. One transform
(AES-CBC/HMAC-SHA-256) between every pair of ends; AES-GCM, UDP/TCP and IPv6 between hosts: suites/esp/test_traffic.py."""
from __future__ import annotations

import pytest

pytestmark = [pytest.mark.lab, pytest.mark.root]


@pytest.mark.topology("tunnel")
@pytest.mark.rfc(4301, "4.1", "MUST")
@pytest.mark.parametrize("esp", ["aes256-sha256"])
def test_hosts_behind_the_gateways_talk_through_the_tunnel(pair, esp):
    pair.establish(pair.connection(hosts=True, child_proposals=[esp]))
    pair.traffic(count=3)
    pair.terminate()
