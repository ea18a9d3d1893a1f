"""The built-in IKEv2 endpoint against the reference peers in the lab (topology `direct`): initiator and responder.

The tester runs harness.ike.endpoint over its own sockets (harness.lab.driver); the peer
(strongSwan, Libreswan: --peer) loads the mirrored connection. Checked: IKE_SA_INIT and
IKE_AUTH with PSK, the first Child SA (the peer's kernel reports the same SPI pair), a second
Child SA, a Child SA rekey, an IKE SA rekey, a liveness check and the IKE SA delete (the peer
holds no SA of ours afterwards), and the peer initiating to the built-in responder.
Needs root, a runtime and the peers' images (marker lab); skips otherwise.
"""
from __future__ import annotations

import pytest

from harness.ike.auth import Identity
from harness.ike.config import IkeConfig
from harness.ike.endpoint import IkeEndpoint
from harness.ike.events import ChildSaDeleted, ChildSaEstablished, ExchangeFailed, IkeSaDeleted, IkeSaEstablished
from harness.ike.proposals import parse_proposals
from harness.lab.driver import SocketDriver
from harness.peers import connection_from_dict, mirrored

pytestmark = [pytest.mark.lab, pytest.mark.root]
PSK = "ipsec-interop built-in endpoint PSK 0123456789"
CASES = {
    "gcm-transport": ("aes128gcm16-prfsha256-ecp256", "aes128gcm16", "transport"),
    "cbc-tunnel": ("aes256-sha256-modp2048", "aes256-sha256", "tunnel"),
}


def _connection(lab, case: str, initiator: str):
    ike, esp, mode = CASES[case]
    tester, peer = lab.tester.address(), lab.lab.node("peer").address()
    conn = connection_from_dict({"name": "builtin", "local_addr": tester, "remote_addr": peer, "auth": {"psk": PSK},
                                 "protocol": "esp", "mode": mode, "child_proposals": [esp], "ike_proposals": [ike]})
    lab.peer.load(mirrored(conn, role="responder") if initiator == "builtin" else _swap(conn, case))
    cfg = IkeConfig(local_id=Identity.of(tester), psk=PSK.encode(), ike_proposals=parse_proposals(ike, "ike"),
                    child_proposals=parse_proposals(esp, "esp"), mode=mode)
    ep = IkeEndpoint(cfg, (tester, 500))
    return ep, SocketDriver(ep, lab.tester.ike_sockets()), peer


def _swap(conn, case):
    ike, esp, mode = CASES[case]
    return connection_from_dict({"name": "builtin", "local_addr": conn.remote_addr, "remote_addr": conn.local_addr,
                                 "auth": {"psk": PSK}, "protocol": "esp", "mode": mode, "child_proposals": [esp],
                                 "ike_proposals": [ike]})


def _peer_pairs(lab) -> set[tuple[int, int]]:
    """(peer inbound SPI, peer outbound SPI) of every live Child SA the peer reports."""
    return {(c.spi_in, c.spi_out) for s in lab.peer.list_sas() for c in s.children if "DELETED" not in c.state}


def _child_pairs(ep: IkeEndpoint) -> set[tuple[int, int]]:
    """Our Child SAs as the peer sees them: (its inbound = our outbound SPI, its outbound = our inbound)."""
    return {(int.from_bytes(c.spi_out, "big"), int.from_bytes(c.spi_in, "big"))
            for sa in ep.established() for c in sa.children.values()}


def _cleanup(lab, ep: IkeEndpoint, d: SocketDriver) -> None:
    """Delete what is left of our IKE SAs (so the pooled peer starts clean), then unload the connection."""
    for sa in ep.established():
        d.send(ep.delete_ike(sa))
    try:
        d.run_until(lambda e: not ep.established(), 5)
    finally:
        lab.peer.unload("builtin")


def _until(d: SocketDriver, kind, timeout: float = 20):
    d.events.clear()
    return d.run_until(lambda e: any(isinstance(x, (kind, ExchangeFailed)) for x in e), timeout)


@pytest.mark.rfc(7296, "1.3", "MUST")
@pytest.mark.parametrize("case", sorted(CASES))
def test_builtin_initiator_full_life(lab, case):
    ep, d, peer = _connection(lab, case, "builtin")
    try:
        d.send(ep.initiate((peer, 500)))
        ev = _until(d, ChildSaEstablished)
        assert [type(x) for x in ev if isinstance(x, (IkeSaEstablished, ChildSaEstablished))] == \
            [IkeSaEstablished, ChildSaEstablished], ev
        sa = ep.established()[0]
        assert _child_pairs(ep) <= _peer_pairs(lab)
        d.send(ep.create_child(sa))
        assert any(isinstance(x, ChildSaEstablished) for x in _until(d, ChildSaEstablished))
        first = next(iter(sa.children))
        d.send(ep.rekey_child(sa, first, pfs_group=0))
        ev = _until(d, ChildSaDeleted)
        assert not [x for x in ev if isinstance(x, ExchangeFailed)], ev
        d.send(ep.rekey_ike(sa))
        ev = _until(d, IkeSaDeleted)
        assert not [x for x in ev if isinstance(x, ExchangeFailed)], ev
        new = ep.established()[0]
        assert new is not sa and len(new.children) == 2
        pairs = _child_pairs(ep)
        assert pairs <= _peer_pairs(lab)
        d.send(ep.liveness(new))
        d.run_until(lambda e: not new.pending, 10)
        d.send(ep.delete_ike(new))
        _until(d, IkeSaDeleted)
        assert not ep.sas and not pairs & _peer_pairs(lab)  # the peer removed every Child SA of ours
    finally:
        _cleanup(lab, ep, d)


@pytest.mark.rfc(7296, "1.2", "MUST")
@pytest.mark.parametrize("case", sorted(CASES))
def test_builtin_responder(lab, case):
    ep, d, peer = _connection(lab, case, "peer")
    thread = d.serve()
    try:
        lab.peer.initiate("builtin", timeout=20)
    finally:
        d.stop()
        thread.join(2)
    try:
        assert any(isinstance(x, ChildSaEstablished) for x in d.events), d.events
        assert _child_pairs(ep) and _child_pairs(ep) <= _peer_pairs(lab)
    finally:
        _cleanup(lab, ep, d)


@pytest.fixture(scope="module")
def pki():
    from harness.ike.certs import TestPki
    return TestPki()


@pytest.mark.rfc(7427, "3", "MUST")
@pytest.mark.parametrize("kind", ["p256", "rsa2048"])
@pytest.mark.parametrize("who", ["builtin", "peer"])
def test_certificate_authentication(lab, pki, kind, who, request):
    from cryptography.hazmat.primitives import serialization as ser
    if kind == "p256" and "libreswan" in request.node.name:
        # Measured: pluto logs "peer authentication requires policy ECDSA" and "EXPECTATION FAILED:
        # pks->content.type == type": the adapter's connection allows RSA signatures only.
        pytest.skip("harness.peers.libreswan renders certificate auth for RSA only (no ECDSA policy)")
    tester, peer = lab.tester.address(), lab.lab.node("peer").address()
    mine, theirs = pki.issue(f"CN=tester-{kind}", [tester], kind), pki.issue(f"CN=peer-{kind}", [peer], kind)
    pem = theirs.key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()).decode()
    auth = {"method": "pubkey", "cert_pem": theirs.cert.public_bytes(ser.Encoding.PEM).decode(), "key_pem": pem,
            "ca_pem": pki.ca_cert.public_bytes(ser.Encoding.PEM).decode()}
    lab.peer.load(connection_from_dict({"name": "builtin", "local_addr": peer, "remote_addr": tester, "auth": auth,
                                        "mode": "transport", "child_proposals": ["aes128gcm16"],
                                        "ike_proposals": ["aes128gcm16-prfsha256-ecp256"]}))
    cfg = IkeConfig(local_id=Identity.of(tester), credential=mine,
                    trust_anchor=pki.ca_cert, mode="transport")
    ep = IkeEndpoint(cfg, (tester, 500))
    d = SocketDriver(ep, lab.tester.ike_sockets())
    try:
        if who == "builtin":
            d.send(ep.initiate((peer, 500)))
            ev = _until(d, ChildSaEstablished)
        else:
            thread = d.serve()
            try:
                lab.peer.initiate("builtin", timeout=20)
            finally:
                d.stop()
                thread.join(2)
            ev = d.events
        assert not [x for x in ev if isinstance(x, ExchangeFailed)], ev
        assert any(isinstance(x, ChildSaEstablished) for x in ev), ev
        assert _child_pairs(ep) <= _peer_pairs(lab)
        assert ep.established()[0].peer_id in (peer, f"CN=peer-{kind}")  # Libreswan identifies by the subject DN
    finally:
        _cleanup(lab, ep, d)
