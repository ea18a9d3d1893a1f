"""The built-in initiator and responder over real UDP sockets on 127.0.0.1 (harness.ike.transport)."""
from __future__ import annotations

import asyncio

import pytest

from harness.ike.auth import Identity
from harness.ike.config import IkeConfig
from harness.ike.endpoint import IkeEndpoint
from harness.ike.events import ChildSaEstablished, IkeSaDeleted
from harness.ike.proposals import parse_proposals
from harness.ike.transport import UdpDriver

PSK = b"loopback PSK"


def _cfg(side: str, ike: str, esp: str, mode: str) -> IkeConfig:
    return IkeConfig(local_id=Identity.of(f"{side}.example"), psk=PSK, ike_proposals=parse_proposals(ike, "ike"),
                     child_proposals=parse_proposals(esp, "esp"), mode=mode, retransmit_timeout=0.2)


async def _session(ike: str, esp: str, mode: str) -> tuple[list, list, dict, dict]:
    ev_a, ev_b = [], []
    a = IkeEndpoint(_cfg("moon", ike, esp, mode), ("127.0.0.1", 0))
    b = IkeEndpoint(_cfg("sun", ike, esp, mode), ("127.0.0.1", 0))
    async with UdpDriver(a, ev_a.append) as da, UdpDriver(b, ev_b.append) as db:
        da.send(a.initiate(b.local))
        await da.wait_for(lambda: len(da.child_sas) == 1 and len(db.child_sas) == 1)
        sa = a.established()[0]
        da.send(a.create_child(sa))
        await da.wait_for(lambda: len(da.child_sas) == 2 and len(db.child_sas) == 2)
        (spi, *_) = list(da.child_sas)
        da.send(a.rekey_child(sa, spi.to_bytes(4, "big")))
        await da.wait_for(lambda: spi not in da.child_sas and len(da.child_sas) == 2 and len(db.child_sas) == 2)
        da.send(a.rekey_ike(sa))
        await da.wait_for(lambda: len(a.sas) == 1 and len(b.sas) == 1 and a.established() and a.established()[0] is not sa)
        children_a, children_b = dict(da.child_sas), dict(db.child_sas)
        da.send(a.delete_ike(a.established()[0]))
        await db.wait_for(lambda: not b.sas and not a.sas)
    return ev_a, ev_b, children_a, children_b


@pytest.mark.parametrize("ike,esp,mode", [
    ("aes128-sha256-modp2048", "aes128-sha256", "tunnel"),
    ("aes128gcm16-prfsha256-ecp256", "aes128gcm16", "transport"),
    ("chacha20poly1305-prfsha256-x25519", "chacha20poly1305", "tunnel"),
])
def test_udp_loopback_full_life(ike, esp, mode):
    ev_a, ev_b, ca, cb = asyncio.run(asyncio.wait_for(_session(ike, esp, mode), 30))
    assert len(ca) == len(cb) == 2
    for spi, e in ca.items():
        peer = cb[e.outbound.spi]
        assert e.outbound == peer.inbound and e.inbound == peer.outbound
        assert e.inbound.mode == mode
    assert any(isinstance(e, IkeSaDeleted) for e in ev_a) and any(isinstance(e, IkeSaDeleted) for e in ev_b)
    assert sum(isinstance(e, ChildSaEstablished) for e in ev_a) == 3  # first, second, and the rekeyed one
