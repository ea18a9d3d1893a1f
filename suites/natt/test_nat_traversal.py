"""NAT traversal between the built-in stack and each peer (RFC 7296 s2.23, RFC 3948; IPv4 only, as NAT is): the
tester behind a NAT router, the peer behind one (its router forwards UDP 500/4500), and both. NAT detection
moves IKE to port 4500, the Child SA is UDP-encapsulated on both ends, and traffic crosses it both ways."""
from __future__ import annotations

import pytest

pytestmark = [pytest.mark.lab, pytest.mark.root, pytest.mark.rfc(7296, "2.23", "MUST"), pytest.mark.rfc(3948, "2", "MUST")]


def _across_the_nat(pair) -> None:
    pair.establish(pair.connection(mode="tunnel"))
    for end in pair.ends:
        child = pair.ike_sas(end)[0].children[0]
        assert child.encap, f"{end.name}: the Child SA across the NAT is not UDP-encapsulated"
    pair.traffic(count=2)
    pair.terminate()


@pytest.mark.topology("nat")
@pytest.mark.ends("builtin>peer")
def test_tester_behind_nat(pair):
    _across_the_nat(pair)


@pytest.mark.topology("nat-peer")
@pytest.mark.ends("builtin>peer", "peer>builtin")
def test_peer_behind_nat(pair):
    _across_the_nat(pair)


@pytest.mark.topology("nat-both")
@pytest.mark.ends("builtin>peer")
def test_both_behind_nat(pair):
    _across_the_nat(pair)
