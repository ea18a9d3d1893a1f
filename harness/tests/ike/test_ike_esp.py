"""Child SAs negotiated by the built-in IKEv2 endpoints carry traffic both ways through harness.esp.

For a matrix of transforms (AES-CBC+HMAC-SHA2, AES-GCM, ChaCha20-Poly1305; MODP-2048, ECP-256,
X25519), both authentication families (PSK, ECDSA certificates) and both modes, the SAs of
each ChildSaEstablished event go into harness.esp Sender/Receiver: what one side protects the
other unprotects; a rekeyed Child SA works the same; AH and UDP-encapsulated ESP too.
"""
from __future__ import annotations

import struct

import pytest

from harness.esp import Receiver, SecurityAssociation, Sender
from harness.esp.ip import addr_bytes, ipv4_header
from harness.ike.auth import Identity
from harness.ike.certs import TestPki
from harness.ike.config import IkeConfig
from harness.ike.endpoint import Datagram, IkeEndpoint
from harness.ike.events import ChildSaEstablished
from harness.ike.loopback import FakeClock, Wire, seeded_rng
from harness.ike.proposals import parse_proposals
from harness.ike.ts import TrafficSelector as TS

A, B = ("198.18.0.1", 500), ("198.18.0.2", 500)
NET_A, NET_B = "198.18.10.0/24", "198.18.20.0/24"


@pytest.fixture(scope="module")
def pki():
    p = TestPki()
    return p, {s: p.issue(f"CN={s}", [f"{s}.example"], "p256") for s in ("moon", "sun")}


def _udp_packet(src: str, dst: str, payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", 4000, 5000, 8 + len(payload), 0) + payload
    return ipv4_header(addr_bytes(src), addr_bytes(dst), 17, len(udp)) + udp


def _config(side, ike, esp, mode, auth, pki, proto="esp"):
    p, creds = pki
    kw = dict(psk=b"traffic PSK") if auth == "psk" else dict(credential=creds[side], trust_anchor=p.ca_cert)
    local, remote = (NET_A, NET_B) if side == "moon" else (NET_B, NET_A)
    ts = dict(local_ts=[TS.of(local)], remote_ts=[TS.of(remote)]) if mode == "tunnel" else {}
    return IkeConfig(local_id=Identity.of(f"{side}.example"), ike_proposals=parse_proposals(ike, "ike"),
                     child_proposals=parse_proposals(esp, proto), mode=mode, **kw, **ts)


def _children(ep: IkeEndpoint) -> dict[int, ChildSaEstablished]:
    return {e.inbound.spi: e for e in ep.drain_events() if isinstance(e, ChildSaEstablished)}


def _traffic(ev_a: ChildSaEstablished, ev_b: ChildSaEstablished, mode: str, udp_encap=None) -> None:
    """Packets from A to B and back through each side's SAs, checked byte for byte."""
    out_a = SecurityAssociation.from_keys(ev_a.outbound, udp_encap)
    in_b = SecurityAssociation.from_keys(ev_b.inbound, udp_encap)
    out_b = SecurityAssociation.from_keys(ev_b.outbound, udp_encap)
    in_a = SecurityAssociation.from_keys(ev_a.inbound, udp_encap)
    tx_a, rx_b, tx_b, rx_a = Sender(out_a), Receiver(in_b), Sender(out_b), Receiver(in_a)
    hosts = ("198.18.10.5", "198.18.20.7") if mode == "tunnel" else (A[0], B[0])
    for n in range(3):
        ping = _udp_packet(hosts[0], hosts[1], b"ping %d" % n)
        pong = _udp_packet(hosts[1], hosts[0], b"pong %d" % n * 50)
        wire = tx_a.protect(ping)
        assert ping[20:] not in wire or out_a.protocol == "ah"
        assert rx_b.unprotect(wire).inner == ping
        assert rx_a.unprotect(tx_b.protect(pong)).inner == pong


MATRIX = [
    ("aes128-sha256-modp2048", "aes128-sha256"),
    ("aes256gcm16-prfsha256-ecp256", "aes256gcm16"),
    ("chacha20poly1305-prfsha256-x25519", "chacha20poly1305"),
]


@pytest.mark.rfc(7296, "2.17", "MUST")
@pytest.mark.parametrize("auth", ["psk", "ecdsa"])
@pytest.mark.parametrize("mode", ["tunnel", "transport"])
@pytest.mark.parametrize("ike,esp", MATRIX, ids=[m[1] for m in MATRIX])
def test_negotiated_esp_carries_traffic(pki, ike, esp, mode, auth):
    clock = FakeClock()
    a = IkeEndpoint(_config("moon", ike, esp, mode, auth, pki), A, clock, seeded_rng(7))
    b = IkeEndpoint(_config("sun", ike, esp, mode, auth, pki), B, clock, seeded_rng(8))
    w = Wire(a, b)
    w.run(a.initiate(B))
    ca, cb = _children(a), _children(b)
    assert len(ca) == len(cb) == 1
    (ev_a,), (ev_b,) = ca.values(), cb.values()
    assert ev_a.inbound.mode == mode
    _traffic(ev_a, ev_b, mode)
    sa_a = a.established()[0]
    w.run(a.rekey_child(sa_a, ev_a.inbound.spi.to_bytes(4, "big"), pfs_group=0))  # the rekeyed SA works too
    (new_a,), (new_b,) = _children(a).values(), _children(b).values()
    assert new_a.rekeyed_spi == ev_a.inbound.spi
    _traffic(new_a, new_b, mode)


@pytest.mark.rfc(7296, "2.17", "MUST")
def test_negotiated_ah_carries_traffic(pki):
    clock = FakeClock()
    a = IkeEndpoint(_config("moon", "aes128gcm16-prfsha256-ecp256", "sha256", "transport", "psk", pki, "ah"), A, clock)
    b = IkeEndpoint(_config("sun", "aes128gcm16-prfsha256-ecp256", "sha256", "transport", "psk", pki, "ah"), B, clock)
    Wire(a, b).run(a.initiate(B))
    (ev_a,), (ev_b,) = _children(a).values(), _children(b).values()
    assert ev_a.inbound.protocol == "ah" and ev_a.inbound.encryption is None
    _traffic(ev_a, ev_b, "transport")


@pytest.mark.rfc(3948, "2.1", "MUST")
def test_udp_encapsulated_esp_after_nat_detection(pki):
    nat = ("198.18.100.1", 40000)

    def natting(d: Datagram):
        if d.src[0] == A[0]:
            return Datagram(d.data, (nat[0], nat[1] + (d.src[1] == 4500)), d.dst)
        if d.dst[0] == nat[0]:
            return Datagram(d.data, d.src, (A[0], 500 if d.dst[1] == nat[1] else 4500))
        return d
    clock = FakeClock()
    a = IkeEndpoint(_config("moon", "aes128gcm16-prfsha256-ecp256", "aes128gcm16", "tunnel", "psk", pki), A, clock)
    b = IkeEndpoint(_config("sun", "aes128gcm16-prfsha256-ecp256", "aes128gcm16", "tunnel", "psk", pki), B, clock)
    Wire(a, b, natting).run(a.initiate(B))
    (ev_a,), (ev_b,) = _children(a).values(), _children(b).values()
    assert ev_a.udp_encap and ev_b.udp_encap
    _traffic(ev_a, ev_b, "tunnel", udp_encap=(4500, 4500))
