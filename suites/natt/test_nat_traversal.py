"""NAT traversal between the built-in stack and each peer (RFC 7296 s2.23, RFC 3948). IPv4 only: NAT is an IPv4 matter
here, and the lab's NAT routers translate IPv4 alone.

In each topology (the tester behind a NAT router, the peer behind one that forwards UDP 500/4500 to it, both, and
none) the capture of each end's own segment is judged (harness/cases/natt.py): the NAT_DETECTION_SOURCE_IP and
NAT_DETECTION_DESTINATION_IP notifies of IKE_SA_INIT hash what each end really sent, the receiver's segment shows the
NAT the topology has, and where there is one every IKE message after IKE_SA_INIT is on UDP 4500 behind the non-ESP
marker and ESP is UDP-encapsulated both ways while traffic crosses it; where there is none, neither. Forced
encapsulation without a NAT (forced.json): each peer's option, and the built-in end faking its NAT-D hash.
Idle behind a NAT: NAT-keepalives at the lab's 2 s interval (RFC 3948 s2.3, SHOULD) and an IKE message on 4500 taken as
IKE. The NAT router in front of the tester rebinds mid-SA (harness/lab/rebind.py): the peer answers at the new mapping
(RFC 7296 s2.11, MUST) and moves ESP and its own requests there (s2.23, SHOULD). Transport mode from behind the NAT
(s2.23.1) with a UDP datagram whose checksum the built-in end fixes (RFC 3948 s3.1.2).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.cases.dataplane import protect_with
from harness.cases.natt import (expect_ike_on_4500, expect_keepalives, expect_nat_traversal, expect_new_mapping_followed,
                                expect_transport_udp_checksum, translated)
from harness.cases.table import table_params
from harness.errors import PeerFault
from harness.esp import Faults
from harness.lab.rebind import NEW_PORTS, rebound

pytestmark = [pytest.mark.lab, pytest.mark.root, pytest.mark.rfc(7296, "2.23", "MUST"), pytest.mark.rfc(3948, "2", "MUST")]

FORCED = Path(__file__).with_name("forced.json")


def _traverse(pair, request, conn, responder=None, forced: frozenset[str] = frozenset()) -> None:
    """Establish, carry traffic both ways, and judge the capture (the NAT seen must be the lab's: else LabError), and
    with forced encapsulation a NAT must be shown though the lab has none."""
    pair.establish(conn, responder)
    pair.traffic(count=2)
    verdict = expect_nat_traversal(pair, request, forced)
    request.node.user_properties.append(("natt", f"nat={verdict.nat} ike_after_init={verdict.ike_after_init} "
                                                 f"esp={verdict.esp}"))
    if forced and not verdict.nat:
        raise PeerFault(f"{', '.join(sorted(forced))} forced UDP encapsulation, yet no NAT was shown in IKE_SA_INIT "
                        f"and IKE stayed on port 500", pair.requirement)
    pair.terminate()


@pytest.mark.topology("nat")
@pytest.mark.ends("builtin>peer")
def test_tester_behind_nat(pair, request):
    _traverse(pair, request, pair.connection(mode="tunnel"))


@pytest.mark.topology("nat-peer")
@pytest.mark.ends("builtin>peer", "peer>builtin")
def test_peer_behind_nat(pair, request):
    _traverse(pair, request, pair.connection(mode="tunnel"))


@pytest.mark.topology("nat-both")
@pytest.mark.ends("builtin>peer")
def test_both_behind_nat(pair, request):
    _traverse(pair, request, pair.connection(mode="tunnel"))


@pytest.mark.topology("direct")
@pytest.mark.ends("builtin>peer", "peer>builtin")
def test_no_nat_no_encapsulation(pair, request):
    _traverse(pair, request, pair.connection(mode="tunnel"))


@pytest.mark.topology("direct")
@pytest.mark.parametrize("row", table_params(FORCED))
def test_forced_encapsulation_without_nat(pair, row, request):
    conn = pair.from_row(row)
    responder = pair.mirror(conn, **row.responder)
    forced = frozenset(e.name for e, c in ((pair.initiator, conn), (pair.responder, responder)) if c.encap == "force")
    _traverse(pair, request, conn, responder, forced)


def _idle_behind_nat(pair, request) -> None:
    """Idle on an established SA: each end behind a NAT sends NAT-keepalives at the lab's interval (RFC 3948 s2.3);
    then an IKE message on port 4500 (zero SPI: the non-ESP marker) is taken as IKE, never as ESP (s2.2)."""
    pair.establish(pair.connection(mode="tunnel"))
    for end in pair.ends:
        if translated(pair, end):
            gaps = expect_keepalives(pair, request, end)
            request.node.user_properties.append((f"keepalive_gaps_{end.name}", [round(g, 2) for g in gaps]))
    request.node.user_properties.append(("kernel_counted_for_ike_on_4500", expect_ike_on_4500(pair)))
    pair.traffic(count=1)
    expect_nat_traversal(pair, request)
    pair.terminate()


@pytest.mark.topology("nat")
@pytest.mark.ends("builtin>peer")
@pytest.mark.rfc(3948, "2.3", "SHOULD")
def test_keepalives_from_the_tester_behind_nat(pair, request):
    _idle_behind_nat(pair, request)


@pytest.mark.topology("nat-peer")
@pytest.mark.ends("builtin>peer", "peer>builtin")
@pytest.mark.rfc(3948, "2.3", "SHOULD")
def test_keepalives_from_the_peer_behind_nat(pair, request):
    _idle_behind_nat(pair, request)


@pytest.mark.topology("nat")
@pytest.mark.ends("builtin>peer")
@pytest.mark.rfc(7296, "2.23", "SHOULD")
@pytest.mark.parametrize("new_address", [False, True], ids=["new-port", "new-address"])
def test_nat_mapping_change_is_followed(pair, request, new_address):
    pair.establish(pair.connection(mode="tunnel"))
    pair.traffic(count=1)
    with rebound(pair.lab, "nat", new_address=new_address):
        followed = expect_new_mapping_followed(pair, request, NEW_PORTS)
    request.node.user_properties.append(("nat_rebind", followed))


@pytest.mark.topology("nat")
@pytest.mark.ends("builtin>peer")
@pytest.mark.rfc(3948, "3.1.2", "MUST")
def test_transport_mode_behind_nat(pair, request):
    """Transport mode from behind the NAT (RFC 7296 s2.23.1): the peer answers echo requests through the UDP-encapsulated
    Child SA; its answers reach the built-in end with the NAT's addresses, whose TCP/UDP checksums it fixes (s3.1.2).
    The peer is told the built-in end's address behind the NAT (Connection.remote_behind_nat: Libreswan's rightsubnet=,
    which its TSi names; strongSwan substitutes it on its own)."""
    pair.establish(pair.connection(mode="transport"))
    pair.expect_accepted([protect_with(Faults())] * 2, "echo requests in transport mode from behind the NAT")
    expect_transport_udp_checksum(pair)
    verdict = expect_nat_traversal(pair, request)
    if not verdict.nat:
        raise PeerFault("no NAT seen in IKE_SA_INIT from behind the NAT router", pair.requirement)
    pair.terminate()
