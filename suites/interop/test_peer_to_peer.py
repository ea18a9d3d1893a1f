"""The two reference peers negotiate with each other: proof that the lab, the runtimes and both adapters work.

Until the built-in initiator exists, strongSwan and Libreswan are each other's counterpart: for every built
(strongSwan, Libreswan) pair, each side initiates an IKE SA with one Child SA (ESP transport, ESP tunnel,
AH transport), a ping crosses it, the kernel's SA counters on both nodes show the packets, and both
adapters' list_sas() agree on the SPIs and on each other's traffic. Topology p2p: left and right peers
on one segment, the tester watching (captures per test with keys.json from the kernel SAs).
"""
from __future__ import annotations

import itertools

import pytest

from harness.errors import LabError
from harness.lab import peering
from harness.peers import connection_from_dict, mirrored

pytestmark = [pytest.mark.lab, pytest.mark.root, pytest.mark.rfc(7296, "1.3", "MUST")]

PINGS = 3
PSK = "ipsec-interop-p2p-psk-0123456789"
CASES = {
    "esp-transport": {"protocol": "esp", "mode": "transport", "child_proposals": ["aes128gcm16"]},
    "esp-tunnel": {"protocol": "esp", "mode": "tunnel", "child_proposals": ["aes256-sha256"],
                   "ike_proposals": ["aes256-sha256-modp2048"]},
    "ah-transport": {"protocol": "ah", "mode": "transport", "child_proposals": ["sha256"]},
    "esp-transport-v6": {"protocol": "esp", "mode": "transport", "child_proposals": ["chacha20poly1305"],
                         "ike_proposals": ["aes256gcm16-prfsha384-ecp384"], "child_name": "p2p-v6"},
}


def _pairs() -> list:
    """(strongSwan, Libreswan) pairs among the built peers; one skipped param saying why when there is none."""
    built, reason = peering.built_peers()
    ss = [p for p in built if p.startswith("strongswan-")]
    lsw = [p for p in built if p.startswith("libreswan-")]
    pairs = [pytest.param((a, b), id=f"{a}+{b}", marks=pytest.mark.xdist_group(f"p2p-{a}-{b}"))
             for a, b in itertools.product(ss, lsw)]
    return pairs or [pytest.param(None, id="no-pair", marks=pytest.mark.skip(
        reason=reason or f"needs a built strongSwan and a built Libreswan image (built: {', '.join(built) or 'none'})"))]


@pytest.fixture
def p2p(request: pytest.FixtureRequest, lab_pool):  # type: ignore[no-untyped-def]
    """The p2p lab with strongSwan on `left` and Libreswan on `right` (pooled per pair)."""
    import os

    if os.geteuid() != 0:
        pytest.skip("needs root: the lab creates network namespaces and UML TAPs")
    pair = request.param
    try:
        env = lab_pool.get("p2p", {"left": pair[0], "right": pair[1]})
    except peering.Unavailable as e:
        pytest.skip(str(e))
    for name, h in env.peers.items():
        request.node.user_properties += [(f"{name}.runtime", h.runtime), (f"{name}.kernel", h.kernel),
                                         (f"{name}.peer_version", h.version)]
    # the pair is this test's column in the interop matrix
    left, right = env.peers["left"], env.peers["right"]
    request.node.user_properties += [("peer", f"{pair[0]}+{pair[1]}"), ("peer_version", f"{left.version} / {right.version}"),
                                     ("runtime", left.runtime), ("kernel", left.kernel)]
    yield env
    import time

    for h in env.peers.values():  # leave no SA behind for the next case on this pooled lab
        try:
            h.adapter.unload("p2p")
        except LabError:  # the case failed before loading it: nothing to unload
            pass
    deadline = time.monotonic() + 5  # a peer may have been re-initiating while the other unloaded
    while any(h.adapter.xfrm_state() for h in env.peers.values()) and time.monotonic() < deadline:
        for h in env.peers.values():
            try:
                h.adapter.unload("p2p")
            except LabError:
                pass
        time.sleep(0.5)
    for h in env.peers.values():
        assert h.adapter.xfrm_state() == [], f"{h.name}: SAs left after unload"

@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("initiator", ["left", "right"])
@pytest.mark.parametrize("p2p", _pairs(), indirect=True)
def test_reference_peers_negotiate_and_carry_traffic(p2p, initiator: str, case: str) -> None:  # type: ignore[no-untyped-def]
    responder = "right" if initiator == "left" else "left"
    ini, res = p2p.peers[initiator], p2p.peers[responder]
    lab = p2p.lab
    version = 6 if case.endswith("-v6") else 4
    conn = connection_from_dict({"name": "p2p", "local_addr": lab.node(initiator).address(version=version),
                                 "remote_addr": lab.node(responder).address(version=version), "auth": {"psk": PSK}, **CASES[case]})
    res.adapter.load(mirrored(conn, role="responder"))
    ini.adapter.load(conn)
    ini.adapter.initiate("p2p", timeout=20)

    ping = ["ping", "-6" if version == 6 else "-4", "-n", "-c", str(PINGS), "-i", "0.2", "-W", "2", conn.remote_addr]
    rc, out, err = ini.node.exec(ping, timeout=15)
    assert rc == 0, f"ping over the Child SA failed: {out}{err}"

    (i_sa,) = [s for s in ini.adapter.list_sas() if s.established]
    (r_sa,) = [s for s in res.adapter.list_sas() if s.established]
    (ic,), (rc_,) = i_sa.children, r_sa.children
    assert (ic.spi_in, ic.spi_out) == (rc_.spi_out, rc_.spi_in), "the two ends disagree on the Child SA's SPIs"
    assert ic.protocol == rc_.protocol == conn.protocol.upper() and ic.mode == rc_.mode == conn.mode
    assert i_sa.local_addr == conn.local_addr and i_sa.remote_addr == conn.remote_addr
    assert i_sa.initiator is True and r_sa.initiator is not True
    for c in (ic, rc_):
        assert c.packets_out >= PINGS and c.packets_in >= PINGS, c
        assert c.keys, "the kernel's keys were not joined to the Child SA"
    # the kernel's own counters, SA by SA: what one end sent, the other received
    for h, c in ((ini, ic), (res, rc_)):
        states = {s.spi: s for s in h.adapter.xfrm_state()}
        assert set(states) == {c.spi_in, c.spi_out}
        assert states[c.spi_out].current_packets >= PINGS and states[c.spi_in].current_packets >= PINGS
        assert all(s.integrity_failed == 0 and s.replay_errors == 0 for s in states.values())
    assert ic.keys == {k.replace("_in", "_x").replace("_out", "_in").replace("_x", "_out"): v for k, v in rc_.keys.items()}

    ini.adapter.terminate("p2p")
    assert not [s for s in ini.adapter.list_sas() if s.established]


def _state(h):  # type: ignore[no-untyped-def]
    """(IKE SA identity, Child SA SPIs) of a peer's single established IKE SA, None while it has not settled."""
    sas = [s for s in h.adapter.list_sas() if s.established]
    if len(sas) != 1 or len(sas[0].children) != 1:
        return None
    sa, c = sas[0], sas[0].children[0]
    return (sa.spi_i, sa.spi_r, sa.serial), (c.spi_in, c.spi_out)


@pytest.mark.parametrize("what", ["child", "ike"])
@pytest.mark.parametrize("initiator", ["left", "right"])
@pytest.mark.parametrize("p2p", _pairs(), indirect=True)
@pytest.mark.rfc(7296, "1.3.3", "MUST")
def test_rekey_replaces_the_sa_and_traffic_goes_on(p2p, initiator: str, what: str) -> None:  # type: ignore[no-untyped-def]
    import time

    responder = "right" if initiator == "left" else "left"
    ini, res = p2p.peers[initiator], p2p.peers[responder]
    conn = connection_from_dict({"name": "p2p", "local_addr": p2p.lab.node(initiator).address(),
                                 "remote_addr": p2p.lab.node(responder).address(), "auth": {"psk": PSK}})
    res.adapter.load(mirrored(conn, role="responder"))
    ini.adapter.load(conn)
    ini.adapter.initiate("p2p", timeout=20)
    before = {n: _state(h) for n, h in (("ini", ini), ("res", res))}
    assert None not in before.values()
    ini.adapter.rekey("p2p", what)
    deadline = time.monotonic() + 15
    while True:
        after = {n: _state(h) for n, h in (("ini", ini), ("res", res))}
        settled = None not in after.values() and all(after[n] != before[n] for n in after)
        if settled and what == "child":
            settled = all(after[n][1][0] != before[n][1][0] for n in after)  # type: ignore[index]
        if settled:
            break
        assert time.monotonic() < deadline, f"{what} rekey did not settle: before {before}, now {after}"
        time.sleep(0.3)
    (i_ike, i_child), (r_ike, r_child) = after["ini"], after["res"]  # type: ignore[misc]
    assert i_child == (r_child[1], r_child[0]), "the ends disagree on the new Child SA's SPIs"
    if what == "child":
        assert i_child != before["ini"][1]  # type: ignore[index]
    else:
        assert i_ike != before["ini"][0] and r_ike != before["res"][0]  # type: ignore[index]
    rc, out, err = ini.node.exec(["ping", "-n", "-c", str(PINGS), "-i", "0.2", "-W", "2", conn.remote_addr], timeout=15)
    assert rc == 0, f"ping after the {what} rekey failed: {out}{err}"
    ini.adapter.terminate("p2p")


@pytest.fixture(scope="module")
def pki():  # type: ignore[no-untyped-def]
    """One RSA CA for the module: pluto keeps NSS certificates cached, so a CA must not change its key under one name."""
    from harness.ike.certs import TestPki

    return TestPki(ca_kind="rsa2048", name="CN=ipsec-interop p2p CA,O=ipsec-interop")


@pytest.mark.parametrize("initiator", ["left", "right"])
@pytest.mark.parametrize("p2p", _pairs(), indirect=True)
@pytest.mark.rfc(7296, "2.15", "MUST")
def test_certificate_authentication(p2p, pki, initiator: str) -> None:  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import serialization

    def pem(obj) -> str:  # type: ignore[no-untyped-def]
        if hasattr(obj, "private_bytes"):
            return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode()
        return obj.public_bytes(serialization.Encoding.PEM).decode()

    responder = "right" if initiator == "left" else "left"
    addr = {n: p2p.lab.node(n).address() for n in (initiator, responder)}
    cred = {n: pki.issue(f"CN={n},O=ipsec-interop", [addr[n]], kind="rsa2048") for n in addr}

    def end(me: str, other: str, role: str):  # type: ignore[no-untyped-def]
        return connection_from_dict({
            "name": "p2p", "local_addr": addr[me], "remote_addr": addr[other], "role": role,
            "local_id": addr[me], "remote_id": addr[other],
            "auth": {"method": "pubkey", "cert_pem": pem(cred[me].cert), "key_pem": pem(cred[me].key), "ca_pem": pem(pki.ca_cert)}})

    ini, res = p2p.peers[initiator], p2p.peers[responder]
    res.adapter.load(end(responder, initiator, "responder"))
    ini.adapter.load(end(initiator, responder, "responder"))
    sa = ini.adapter.initiate("p2p", timeout=20)
    assert sa.remote_id in (addr[responder], f"CN={responder}, O=ipsec-interop"), \
        f"{ini.name} names its peer {sa.remote_id!r}; log tail:\n{ini.adapter.logs()[-1500:]}"
    rc, out, err = ini.node.exec(["ping", "-n", "-c", "2", "-i", "0.2", "-W", "2", addr[responder]], timeout=15)
    assert rc == 0, out + err
    ini.adapter.terminate("p2p")
