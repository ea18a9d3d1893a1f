"""The docker runtime, whatever --runtime says: each peer in a container on the host kernel.

The built-in initiator brings up an IKE SA with the containerised peer. Whether the first Child SA
can follow depends on the host kernel, so the runtime probe picks one of two cases rather than
assuming: on a kernel with ESP the Child SA is installed on both sides; on one without (this
project's development host: XFRM but no ESP) the peer must report the IKE SA established and refuse
the Child SA with an error notify, and must hold no keyed kernel SA for it. Two cases, so that a
documented difference can name the second one.
"""
from __future__ import annotations

import pytest

from harness.errors import LabError
from harness.ike.auth import Identity as IkeIdentity
from harness.ike.config import IkeConfig
from harness.ike.endpoint import IkeEndpoint
from harness.ike.events import ChildSaEstablished, ExchangeFailed, IkeSaEstablished
from harness.lab import labels, peering
from harness.lab.driver import SocketDriver
from harness.lab.fixtures import LabPool
from harness.peers.connection import Auth, Connection, Identity
from harness.runtime.probe import probe

pytestmark = [pytest.mark.lab, pytest.mark.root]

PSK = "ipsec-interop docker runtime pre-shared key"
CONNECTION = "docker-ike"

@pytest.fixture
def docker_lab(peer, monkeypatch):
    """The `direct` topology with `peer` in a container (a run id of its own: the session's pool stays apart)."""
    monkeypatch.setenv(labels.RUN_ENV, labels.new_run_id())
    pool = LabPool("docker", None, keep=False)
    try:
        env = pool.get("direct", {"peer": peer})
    except peering.Unavailable as e:
        pool.close()
        pytest.skip(f"docker runtime: {e}")
    except LabError:
        pool.close()
        raise
    yield env
    pool.close()


@pytest.fixture
def ike_exchange(docker_lab, peer, record_property):
    """The built-in initiator's IKE SA (and first Child SA) with the containerised responder: (adapter, events)."""
    env = docker_lab
    handle = env.peers["peer"]
    record_property("runtime", handle.runtime)
    record_property("kernel", handle.kernel)
    assert handle.runtime == "docker"
    tester, peer_addr = env.lab.tester.address(), env.lab.node("peer").address()
    adapter = handle.adapter
    adapter.load(Connection(name=CONNECTION, local_addr=peer_addr, remote_addr=tester, auth=Auth(psk=PSK),
                            local_id=Identity("ipv4", peer_addr), remote_id=Identity("ipv4", tester),
                            ike_proposals=("aes128gcm16-prfsha256-ecp256",), child_proposals=("aes128gcm16",),
                            mode="transport", role="responder"))
    try:
        config = IkeConfig(local_id=IkeIdentity.of(tester), remote_id=IkeIdentity.of(peer_addr), psk=PSK.encode(),
                           mode="transport")
        endpoint = IkeEndpoint(config, (tester, 500))
        driver = SocketDriver(endpoint, env.lab.tester.ike_sockets())
        driver.send(endpoint.initiate((peer_addr, 500)))
        events = driver.run_until(lambda ev: any(isinstance(e, (ChildSaEstablished, ExchangeFailed)) for e in ev), 30)
        yield adapter, events
    finally:
        adapter.unload(CONNECTION)


def _ike_sa_up(adapter, events, peer) -> list[ChildSaEstablished]:
    """Assert both ends hold the IKE SA; the Child SAs reported installed."""
    assert any(isinstance(e, IkeSaEstablished) for e in events), f"no IKE SA with {peer}: {events}"
    assert [sa for sa in adapter.list_sas() if sa.established], f"{peer} reports no established IKE SA"
    return [e for e in events if isinstance(e, ChildSaEstablished)]


def _keyed_esp_spis(adapter) -> set[int]:
    """SPIs of keyed ESP states only: Libreswan reserves its inbound SPI with XFRM_MSG_ALLOCSPI, which leaves a
    larval ESP state without algorithms even on a kernel that cannot hold a real one."""
    return {s.spi for s in adapter.xfrm_state() if s.proto == "esp" and s.algorithms}


@pytest.mark.rfc(7296, "1.2", "MUST")
def test_ike_and_child_sa_with_a_containerised_peer(peer, request):
    if not probe().esp:
        pytest.skip("the host kernel cannot hold ESP SAs: test_ike_sa_kept_when_the_kernel_refuses_the_child_sa runs")
    adapter, events = request.getfixturevalue("ike_exchange")
    child = _ike_sa_up(adapter, events, peer)
    assert child, f"the host kernel has ESP, yet {peer} refused the Child SA: {events}"
    assert {child[0].inbound.spi, child[0].outbound.spi} <= _keyed_esp_spis(adapter)


# A documented difference covers strongSwan 6.0 here (suites/differences/strongswan.json): its IKE_AUTH
# response to a refused Child SA carries no IDr and AUTH.
@pytest.mark.rfc(7296, "1.2", "MUST")
def test_ike_sa_kept_when_the_kernel_refuses_the_child_sa(peer, request):
    if probe().esp:
        pytest.skip("the host kernel holds ESP SAs: test_ike_and_child_sa_with_a_containerised_peer runs")
    adapter, events = request.getfixturevalue("ike_exchange")
    child = _ike_sa_up(adapter, events, peer)
    assert not child, "the host kernel has no ESP, yet a Child SA was reported installed"
    refused = [e for e in events if isinstance(e, ExchangeFailed)]
    assert refused and refused[0].received, f"{peer} did not refuse the Child SA with an error notify: {events}"
    spis = _keyed_esp_spis(adapter)
    assert not spis, f"{peer} holds ESP SAs on a kernel without ESP: {spis}"
