"""The built-in stack behind a NAT router (topology nat, nftables masquerade in its own namespace; IPv4 only, as
NAT is): NAT detection moves IKE to port 4500 and the Child SA is UDP-encapsulated on both ends (RFC 7296 s2.23,
RFC 3948), and traffic crosses it both ways."""
from __future__ import annotations

import pytest

pytestmark = [pytest.mark.lab, pytest.mark.root]


@pytest.mark.topology("nat")
@pytest.mark.ends("builtin>peer")
@pytest.mark.rfc(7296, "2.23", "MUST")
@pytest.mark.rfc(3948, "2", "MUST")
def test_nat_detected_and_esp_udp_encapsulated(pair):
    pair.establish(pair.connection(mode="tunnel"))
    for end in pair.ends:
        child = pair.ike_sas(end)[0].children[0]
        assert child.encap, f"{end.name}: the Child SA behind the NAT is not UDP-encapsulated"
    pair.traffic(count=2)
    pair.terminate()
