"""The built-in IKEv2 endpoint over the lab's real sockets: tester to a built-in responder, direct and through NAT."""
from __future__ import annotations

import socket

import pytest

from harness.lab import Lab, labels, netns, read_pcap
from harness.lab.driver import SocketDriver, event_of
from harness.tests.lab.conftest import ipv4_of

from harness.ike import endpoint as ike
from harness.ike.auth import Identity
from harness.ike.config import IkeConfig
from harness.ike.events import ChildSaEstablished, IkeSaEstablished, NatDetected

pytestmark = pytest.mark.root
PSK = b"ipsec-interop lab driver test psk"


def responder_sockets(namespace: str, address: str) -> dict[int, socket.socket]:
    def make() -> dict[int, socket.socket]:
        out = {}
        for port in (500, 4500):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((address, port))
            out[port] = s
        return out
    return netns.run_in(namespace, make)


def exchange(lab: Lab, responder_ns: str, responder_addr: str, tester_segment: str,
             until: type = ChildSaEstablished) -> tuple[list, list]:
    tester_addr = lab.tester.address(tester_segment)
    initiator = ike.IkeEndpoint(IkeConfig(local_id=Identity.of(tester_addr), psk=PSK, mode="transport"), (tester_addr, 500))
    responder = ike.IkeEndpoint(IkeConfig(local_id=Identity.of(responder_addr), psk=PSK, mode="transport"), (responder_addr, 500))
    socks = responder_sockets(responder_ns, responder_addr)
    server = SocketDriver(responder, socks)
    thread = server.serve()
    try:
        client = SocketDriver(initiator, lab.tester.ike_sockets())
        client.send(initiator.initiate((responder_addr, 500)))
        events = client.run_until(event_of(until), timeout=10)
    finally:
        server.stop()
        thread.join()
        for s in socks.values():
            s.close()
    return events, server.events


def test_ike_sa_and_child_sa_between_tester_and_a_host_namespace(tmp_path):
    with Lab("tunnel", run=labels.new_run_id(), worker=0) as lab:
        cap = lab.capture(tmp_path)
        thost = lab.node("thost")
        events, responder_events = exchange(lab, thost.netns, thost.address(), "tlan")
        cap.stop()
        (child,) = [e for e in events if isinstance(e, ChildSaEstablished)]
        assert child.outbound.spi == next(e for e in responder_events if isinstance(e, ChildSaEstablished)).inbound.spi
        udp = [p for p in (ipv4_of(f) for _, f in read_pcap(cap.files["tlan"])) if p and p[2] == 17]
        assert len(udp) >= 4, "IKE_SA_INIT and IKE_AUTH, request and response, crossed the tester's LAN segment"


def test_ike_through_the_nat_router_detects_nat_and_moves_to_4500(tmp_path, namespace_peer):
    with Lab("nat", run=labels.new_run_id(), worker=0) as lab:
        stand_in = namespace_peer(lab, "peer")
        cap = lab.capture(tmp_path)
        # the IKE SA is what crosses the NAT here; the built-in responder's transport-mode selectors behind a
        # NAT (RFC 7296 s2.23.1) are the IKE suites' business
        events, _ = exchange(lab, stand_in.netns, lab.node("peer").address(), "inside", until=IkeSaEstablished)
        cap.stop()
        nat = [e for e in events if isinstance(e, NatDetected)]
        assert nat and nat[0].local_behind_nat
        outside = [p for p in (ipv4_of(f) for _, f in read_pcap(cap.files["outside"])) if p and p[2] == 17]
        assert {p[0] for p in outside if p[1] == lab.node("peer").address()} == {lab.node("nat").address("outside")}
        ports = {int.from_bytes(p[3][2:4], "big") for p in outside}
        assert 4500 in ports, "after NAT detection IKE_AUTH goes to port 4500 (RFC 7296 s2.23)"
