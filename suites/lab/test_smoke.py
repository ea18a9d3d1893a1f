"""Smoke test, one per peer: the built-in IKEv2 initiator brings up an IKE SA and an ESP transport-mode
Child SA with the peer, an ICMP echo crosses the Child SA in both directions (the tester's side in
the built-in ESP code, the peer's in its kernel), and the peer's kernel counts the packets."""
from __future__ import annotations

import select
import socket
import threading
import time

import pytest

from harness.esp import Receiver, Sender, SecurityAssociation
from harness.ike.auth import Identity as IkeIdentity
from harness.ike.config import IkeConfig
from harness.ike.endpoint import IkeEndpoint
from harness.ike.events import ChildSaEstablished, ExchangeFailed
from harness.lab.driver import SocketDriver
from harness.lab.ping import echo_packet, parse_echo
from harness.peers.connection import Auth, Connection, Identity

pytestmark = [pytest.mark.smoke, pytest.mark.lab, pytest.mark.root]

PSK = "ipsec-interop smoke test pre-shared key"
IKE_PROPOSAL = "aes128gcm16-prfsha256-ecp256"
ESP_PROPOSAL = "aes128gcm16"
CONNECTION = "smoke"
IPPROTO_ESP = 50


def _receive_esp(sock: socket.socket, rx: Receiver, timeout: float) -> bytes | None:
    """The inner packet of the next ESP packet for rx's SPI on sock, or None after timeout."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([sock], [], [], left)[0]:
            return None
        outer = sock.recv(65535)
        ihl = (outer[0] & 0x0F) * 4
        if int.from_bytes(outer[ihl:ihl + 4], "big") == rx.sa.spi:
            return rx.unprotect(outer).inner
    return None


def _answer_one_echo(sock: socket.socket, rx: Receiver, tx: Sender, timeout: float, seen: list) -> None:
    """Answer the first ESP-protected echo request with an ESP-protected echo reply (the tester's half of ping)."""
    inner = _receive_esp(sock, rx, timeout)
    echo = parse_echo(inner) if inner else None
    seen.append(echo)
    if echo and echo[2] == 8:
        src, dst, _, ident, seq, payload = echo
        sock.sendto(tx.protect(echo_packet(dst, src, ident, seq, payload, reply=True)), (src, 0))


@pytest.mark.rfc(7296, "1.2", "MUST")
@pytest.mark.rfc(4303, "3.1.1", "MUST")
def test_ike_sa_esp_transport_child_sa_and_ping_both_ways(lab, peer):
    lab.require_kernel_ipsec()
    tester, peer_addr = lab.tester.address(), lab.lab.node("peer").address()
    lab.peer.load(Connection(name=CONNECTION, local_addr=peer_addr, remote_addr=tester, auth=Auth(psk=PSK),
                             local_id=Identity("ipv4", peer_addr), remote_id=Identity("ipv4", tester),
                             ike_proposals=(IKE_PROPOSAL,), child_proposals=(ESP_PROPOSAL,), mode="transport",
                             role="responder"))
    try:
        # 1. IKE_SA_INIT + IKE_AUTH from the built-in initiator over the tester's own sockets
        config = IkeConfig(local_id=IkeIdentity.of(tester), remote_id=IkeIdentity.of(peer_addr), psk=PSK.encode(),
                           mode="transport")
        endpoint = IkeEndpoint(config, (tester, 500))
        driver = SocketDriver(endpoint, lab.tester.ike_sockets())
        driver.send(endpoint.initiate((peer_addr, 500)))
        events = driver.run_until(lambda ev: any(isinstance(e, (ChildSaEstablished, ExchangeFailed)) for e in ev), 30)
        failed = [e for e in events if isinstance(e, ExchangeFailed)]
        assert not failed, f"{peer} refused: {failed[0]}"
        child = next(e for e in events if isinstance(e, ChildSaEstablished))
        lab.keys += [child.inbound, child.outbound]
        (ike_sa,) = [sa for sa in lab.peer.list_sas() if sa.established]
        assert [(c.spi_in, c.spi_out) for c in ike_sa.children] == [(child.outbound.spi, child.inbound.spi)]

        # 2. ping tester -> peer: request sealed by the built-in ESP code, reply sealed by the peer's kernel
        esp = lab.tester.raw[(4, IPPROTO_ESP)]
        esp.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
        tx, rx = Sender(SecurityAssociation.from_keys(child.outbound)), Receiver(SecurityAssociation.from_keys(child.inbound))
        esp.sendto(tx.protect(echo_packet(tester, peer_addr, 0x1515, 1)), (peer_addr, 0))
        reply = _receive_esp(esp, rx, timeout=5)
        assert reply is not None, "no ESP echo reply from the peer"
        assert parse_echo(reply)[:5] == (peer_addr, tester, 0, 0x1515, 1)

        # 3. ping peer -> tester: the peer's kernel seals the request, the tester answers through the SA
        seen: list = []
        answer = threading.Thread(target=_answer_one_echo, args=(esp, rx, tx, 10, seen))
        answer.start()
        rc, out, err = lab.node("peer").exec(["ping", "-n", "-c", "1", "-W", "5", tester], timeout=15)
        answer.join()
        assert seen and seen[0] and seen[0][:3] == (peer_addr, tester, 8), f"no ESP echo request from the peer: {seen}"
        assert rc == 0, f"the peer's ping got no answer through the SA: {out}{err}"

        # 4. the peer's kernel counted both directions on the Child SA
        states = {s.spi: s for s in lab.peer.xfrm_state() if s.proto == "esp"}
        assert states[child.outbound.spi].current_packets == 2, "peer inbound SA: our request and our reply"
        assert states[child.inbound.spi].current_packets == 2, "peer outbound SA: its reply and its request"
    finally:
        lab.peer.unload(CONNECTION)
