"""The built-in initiator and responder against each other, back to back in memory (sans-IO).

Covers IKE_SA_INIT (cookies, INVALID_KE_PAYLOAD, NAT-D), IKE_AUTH (PSK, ECDSA, RSA, RFC 7427;
TS narrowing; transport mode), CREATE_CHILD_SA (new, rekey with/without KE, IKE SA rekey,
simultaneous rekeys), INFORMATIONAL (deletes, liveness, error notifies), Message IDs,
retransmission and cached responses, and the tester's Bugs.
"""
from __future__ import annotations

import pytest

from harness.errors import IkeError
from harness.ike.bend import Bend
from harness.ike.auth import Identity
from harness.ike.certs import TestPki
from harness.ike.config import Bugs, IkeConfig
from harness.ike.endpoint import Datagram, IkeEndpoint
from harness.ike.exchange_init import HALF_OPEN
from harness.ike.events import (ChildSaDeleted, CookieDemanded, CookieRetry, ChildSaEstablished, ExchangeFailed, IkeSaDeleted, Informational, KeRetry, IkeSaEstablished,
                                NatDetected, PeerDead, ProbeAnswered)
from harness.ike.loopback import FakeClock, Wire, seeded_rng
from harness.ike.proposals import parse_proposals
from harness.ike.sa import State
from harness.ike.ts import TrafficSelector as TS

A, B = ("198.18.0.1", 500), ("198.18.0.2", 500)
PSK = b"ipsec-interop test PSK"


@pytest.fixture(scope="module")
def pki():
    return TestPki()


@pytest.fixture(scope="module")
def creds(pki):
    return {k: {side: pki.issue(f"CN={side}-{k},O=ipsec-interop", [addr[0], f"{side}.example"], k)
                for side, addr in (("moon", A), ("sun", B))} for k in ("p256", "rsa2048")}


def cfg(side: str, ike="aes128gcm16-prfsha256-ecp256", esp="aes128gcm16-esn-noesn", **kw) -> IkeConfig:
    local = Identity.of(f"{side}.example")
    kw.setdefault("psk", PSK)
    return IkeConfig(local_id=local, ike_proposals=parse_proposals(ike, "ike"),
                     child_proposals=parse_proposals(esp, kw.pop("child_protocol", "esp")), **kw)


def pair(ca: IkeConfig, cb: IkeConfig, seed: int = 1, tamper=None):
    clock = FakeClock()
    a = IkeEndpoint(ca, A, clock, seeded_rng(seed))
    b = IkeEndpoint(cb, B, clock, seeded_rng(seed + 1000))
    return a, b, Wire(a, b, tamper), clock


def of(events, kind):
    return [e for e in events if isinstance(e, kind)]


def establish(ca=None, cb=None, **kw):
    a, b, w, clock = pair(ca or cfg("moon"), cb or cfg("sun"), **kw)
    w.run(a.initiate(B))
    return a, b, w, clock


def mirrored(a: IkeEndpoint, b: IkeEndpoint):
    """Assert both sides hold the same IKE SA and the same Child SAs, mirrored; return (sa_a, sa_b)."""
    (sa_a,), (sa_b,) = a.established(), b.established()
    assert (sa_a.spi_i, sa_a.spi_r) == (sa_b.spi_i, sa_b.spi_r)
    assert sa_a.keys == sa_b.keys
    assert {(c.spi_in, c.spi_out) for c in sa_a.children.values()} == \
        {(c.spi_out, c.spi_in) for c in sa_b.children.values()}
    for c in sa_a.children.values():
        peer = sa_b.children[c.spi_out]
        ia, oa = c.sa_keys(A[0], B[0])
        ib, ob = peer.sa_keys(B[0], A[0])
        assert oa == ib and ob == ia and c.mode == peer.mode
    return sa_a, sa_b


MATRIX = [
    ("aes128-sha256-modp2048", "aes128-sha256-esn-noesn"),
    ("aes256gcm16-prfsha384-ecp256", "aes256gcm16-noesn"),
    ("chacha20poly1305-prfsha256-x25519", "chacha20poly1305-noesn"),
]


@pytest.mark.rfc(7296, "1.2", "MUST")
@pytest.mark.parametrize("mode", ["tunnel", "transport"])
@pytest.mark.parametrize("ike,esp", MATRIX, ids=[m[0] for m in MATRIX])
def test_psk_handshake_matrix(ike, esp, mode):
    a, b, w, _ = establish(cfg("moon", ike, esp, mode=mode), cfg("sun", ike, esp, mode=mode))
    sa_a, sa_b = mirrored(a, b)
    (ch,) = sa_a.children.values()
    assert ch.mode == mode and sa_a.peer_id == "sun.example" and sa_b.peer_id == "moon.example"
    ev_a, ev_b = a.drain_events(), b.drain_events()
    assert len(of(ev_a, IkeSaEstablished)) == len(of(ev_b, IkeSaEstablished)) == 1
    (ca,), (cb,) = of(ev_a, ChildSaEstablished), of(ev_b, ChildSaEstablished)
    assert ca.outbound == cb.inbound and ca.inbound == cb.outbound and ca.inbound.mode == mode
    assert not of(ev_a + ev_b, ExchangeFailed)
    assert len(w.log) == 4  # IKE_SA_INIT and IKE_AUTH, nothing else


@pytest.mark.rfc(7296, "2.15", "MUST")
@pytest.mark.parametrize("kind", ["p256", "rsa2048"])
@pytest.mark.parametrize("rfc7427", [True, False], ids=["rfc7427", "legacy"])
def test_signature_handshake(pki, creds, kind, rfc7427):
    def c(side, peer):
        return cfg(side, psk=None, credential=creds[kind][side], trust_anchor=pki.ca_cert,
                   remote_id=Identity.of(f"{peer}.example"), rfc7427=rfc7427)
    a, b, w, _ = establish(c("moon", "sun"), c("sun", "moon"))
    sa_a, sa_b = mirrored(a, b)
    assert len(sa_a.children) == 1 and sa_a.peer_id == "sun.example"
    assert sa_a.peer_hashes == (frozenset({2, 3, 4, 5}) if rfc7427 else frozenset())


def test_signature_from_untrusted_ca_fails(pki, creds):
    other = TestPki()
    rogue = other.issue("CN=sun-rogue", ["sun.example"], "p256")
    a, b, w, _ = establish(cfg("moon", psk=None, credential=creds["p256"]["moon"], trust_anchor=pki.ca_cert),
                           cfg("sun", psk=None, credential=rogue, trust_anchor=pki.ca_cert))
    assert not a.sas and not b.sas
    assert "AUTHENTICATION_FAILED" in [e.notify for e in of(a.drain_events(), ExchangeFailed)]


@pytest.mark.rfc(7296, "2.15", "MUST")
def test_wrong_psk_fails_both_sides():
    a, b, w, _ = establish(cfg("moon"), cfg("sun", psk=b"another secret"))
    assert not a.established() and not b.established() and not a.sas and not b.sas
    fa, fb = of(a.drain_events(), ExchangeFailed), of(b.drain_events(), ExchangeFailed)
    assert fb[0].notify == "AUTHENTICATION_FAILED" and not fb[0].received
    assert fa[0].notify == "AUTHENTICATION_FAILED" and fa[0].received


@pytest.mark.rfc(7296, "2.21.2", "MUST")
def test_wrong_auth_from_responder_is_reported_by_initiator():
    a, b, w, _ = establish(cfg("moon"), cfg("sun", bugs=Bugs(wrong_auth=True)))
    assert not a.sas and not b.sas
    fa = of(a.drain_events(), ExchangeFailed)
    assert fa[0].notify == "AUTHENTICATION_FAILED" and not fa[0].received
    assert any(e.notify == "AUTHENTICATION_FAILED" and e.received for e in of(b.drain_events(), ExchangeFailed))


@pytest.mark.rfc(7296, "2.6", "MUST")
def test_cookie_round_trip():
    a, b, w, _ = establish(cfg("moon"), cfg("sun", require_cookie=True))
    mirrored(a, b)
    assert len(w.log) == 6  # SA_INIT, COOKIE, SA_INIT with COOKIE, SA_INIT response, IKE_AUTH x2
    assert w.log[2].data != w.log[0].data and len(w.log[2].data) > len(w.log[0].data)
    assert [(e.stale, e.group) for e in of(b.drain_events(), CookieDemanded)] == [(False, 19)]
    assert [len(e.cookie) for e in of(a.drain_events(), CookieRetry)] == [len(w.log[2].data) - len(w.log[0].data) - 8]


@pytest.mark.rfc(7296, "2.6", "MUST")
def test_cookie_then_invalid_ke_payload():
    a, b, w, _ = establish(cfg("moon", ike="aes128gcm16-prfsha256-ecp256-x25519"),
                           cfg("sun", ike="aes128gcm16-prfsha256-x25519", require_cookie=True))
    sa_a, _ = mirrored(a, b)
    assert sa_a.suite.ke.name == "CURVE25519"
    events = b.drain_events()
    assert [(e.stale, e.group) for e in of(events, CookieDemanded)][0] == (False, 19)
    assert any(e.notify == "INVALID_KE_PAYLOAD" and not e.received for e in of(events, ExchangeFailed))


def test_cookie_ignored_by_buggy_initiator_never_creates_state():
    a, b, w, _ = establish(cfg("moon", bugs=Bugs(ignore_cookie=True)), cfg("sun", require_cookie=True))
    assert not b.sas and not b.half_open and not a.established()


def test_half_open_initiator_leaves_the_responder_a_half_open_sa():
    a, b, w, _ = establish(cfg("moon", bugs=Bugs(half_open=True)), cfg("sun"))
    assert not a.sas and len(b.half_open) == 1 and not b.established() and len(w.log) == 2
    assert [e.reason for e in of(a.drain_events(), IkeSaDeleted)] == [HALF_OPEN]


@pytest.mark.rfc(7296, "1.3", "MUST")
def test_invalid_ke_payload_retry():
    a, b, w, _ = establish(cfg("moon", ike="aes128gcm16-prfsha256-ecp256-x25519"),
                           cfg("sun", ike="aes128gcm16-prfsha256-x25519"))
    sa_a, _ = mirrored(a, b)
    assert sa_a.suite.ke.name == "CURVE25519" and len(w.log) == 6
    assert any(e.notify == "INVALID_KE_PAYLOAD" and not e.received for e in of(b.drain_events(), ExchangeFailed))
    events = a.drain_events()
    assert [(e.exchange, e.group) for e in of(events, KeRetry)] == [("IKE_SA_INIT", 31)] and not of(events, ExchangeFailed)


@pytest.mark.rfc(7296, "2.7", "MUST")
def test_no_proposal_chosen_in_ike_sa_init():
    a, b, w, _ = establish(cfg("moon", ike="aes128-sha256-modp2048"), cfg("sun"))
    assert not a.sas and not b.sas
    assert [e.notify for e in of(a.drain_events(), ExchangeFailed)] == ["NO_PROPOSAL_CHOSEN"]


def test_no_proposal_chosen_for_first_child_keeps_ike_sa():
    a, b, w, _ = establish(cfg("moon", esp="aes128-sha256"), cfg("sun", esp="aes256gcm16"))
    sa_a, sa_b = mirrored(a, b)
    assert not sa_a.children and not sa_b.children
    assert [e.notify for e in of(a.drain_events(), ExchangeFailed)] == ["NO_PROPOSAL_CHOSEN"]


@pytest.mark.rfc(7296, "2.9", "MUST")
def test_ts_narrowing_and_ts_unacceptable():
    a, b, w, _ = establish(cfg("moon", local_ts=[TS.of("198.18.0.0/16")], remote_ts=[TS.of("198.19.0.0/16")]),
                           cfg("sun", local_ts=[TS.of("198.19.4.0/24")], remote_ts=[TS.of("198.18.2.0/24")]))
    sa_a, _ = mirrored(a, b)
    (c,) = sa_a.children.values()
    assert c.ts_local == (TS.of("198.18.2.0/24"),) and c.ts_remote == (TS.of("198.19.4.0/24"),)
    a, b, w, _ = establish(cfg("moon", remote_ts=[TS.of("198.19.0.0/16")]), cfg("sun", local_ts=[TS.of("198.18.9.0/24")]))
    sa_a, _ = mirrored(a, b)
    assert not sa_a.children
    assert [e.notify for e in of(a.drain_events(), ExchangeFailed)] == ["TS_UNACCEPTABLE"]


@pytest.mark.rfc(7296, "2.9", "SHOULD")
def test_additional_ts_possible():
    a, b, w, _ = establish(cfg("moon", remote_ts=[TS.of("198.19.0.0/16")]),
                           cfg("sun", local_ts=[TS.of("198.19.1.0/24"), TS.of("198.19.2.0/24")], single_pair=True))
    sa_a, _ = mirrored(a, b)
    (c,) = sa_a.children.values()
    assert c.ts_remote == (TS.of("198.19.1.0/24"),) and c.additional_ts_possible


@pytest.mark.rfc(7296, "1.3.1", "MUST")
def test_transport_mode_needs_both_sides():
    a, b, w, _ = establish(cfg("moon", mode="transport"), cfg("sun", mode="tunnel"))
    sa_a, _ = mirrored(a, b)
    assert [c.mode for c in sa_a.children.values()] == ["tunnel"]


@pytest.mark.rfc(7296, "3.10.1", "MUST")
@pytest.mark.rfc(4303, "2.7", "MUST")
@pytest.mark.parametrize("refuser", ["initiator", "responder"])
def test_esp_tfc_padding_not_supported_is_sent_and_honoured(refuser):
    moon, sun = cfg("moon", tfc_padding=refuser != "initiator"), cfg("sun", tfc_padding=refuser != "responder")
    a, b, w, _ = establish(moon, sun)
    sa_a, sa_b = mirrored(a, b)
    (ca,), (cb,) = sa_a.children.values(), sa_b.children.values()
    # the side that cannot take TFC padding says so; only its peer records it
    assert (ca.peer_tfc_padding, cb.peer_tfc_padding) == ((True, False) if refuser == "initiator" else (False, True))
    ev_a, ev_b = of(a.drain_events(), ChildSaEstablished), of(b.drain_events(), ChildSaEstablished)
    assert [e.peer_tfc_padding for e in ev_a + ev_b] == [ca.peer_tfc_padding, cb.peer_tfc_padding]


@pytest.mark.rfc(7296, "1.3.1", "MUST")
@pytest.mark.parametrize("pfs", [None, 19], ids=["no-ke", "ke-ecp256"])
def test_create_child_sa(pfs):
    a, b, w, _ = establish(cfg("moon", esp="aes128gcm16-noesn-ecp256"), cfg("sun", esp="aes128gcm16-noesn-ecp256,aes128gcm16-noesn"))
    sa_a = a.established()[0]
    w.run(a.create_child(sa_a, pfs_group=pfs, proposals=parse_proposals("aes128gcm16-noesn" if pfs is None else "aes128gcm16-noesn-ecp256", "esp")))
    sa_a, sa_b = mirrored(a, b)
    assert len(sa_a.children) == 2
    news = [c for c in sa_a.children.values() if c.nonces != (sa_a.ni, sa_a.nr)]
    assert len(news) == 1 and (news[0].suite.ke is not None) == (pfs is not None)


def test_no_additional_sas():
    a, b, w, _ = establish(cfg("moon"), cfg("sun", max_children=1))
    w.run(a.create_child(a.established()[0]))
    assert [e.notify for e in of(a.drain_events(), ExchangeFailed)] == ["NO_ADDITIONAL_SAS"]
    assert len(mirrored(a, b)[0].children) == 1


@pytest.mark.rfc(7296, "2.8", "MUST")
@pytest.mark.parametrize("pfs", [0, 31], ids=["no-ke", "ke-x25519"])
@pytest.mark.parametrize("who", ["initiator", "responder"])
def test_rekey_child_sa(pfs, who):
    esp = "aes128gcm16-noesn-x25519,aes128gcm16-noesn"
    a, b, w, clock = establish(cfg("moon", esp=esp), cfg("sun", esp=esp))
    x, y = (a, b) if who == "initiator" else (b, a)
    sx = x.established()[0]
    (old,) = sx.children.values()
    x.drain_events(), y.drain_events()
    w.run(x.rekey_child(sx, old.spi_in, pfs))
    sa_a, sa_b = mirrored(a, b)
    (new,) = x.established()[0].children.values()
    assert new.spi_in != old.spi_in and new.keys != old.keys and (new.suite.ke is not None) == bool(pfs)
    ex, ey = x.drain_events(), y.drain_events()
    assert of(ex, ChildSaEstablished)[0].rekeyed_spi == int.from_bytes(old.spi_in, "big")
    assert (of(ex, ChildSaEstablished)[0].we_initiated, of(ey, ChildSaEstablished)[0].we_initiated) == (True, False)
    assert of(ex, ChildSaEstablished)[0].started == clock.now and of(ey, ChildSaEstablished)[0].started is None
    assert [e.spi_in for e in of(ex, ChildSaDeleted)] == [int.from_bytes(old.spi_in, "big")]
    assert [e.spi_out for e in of(ey, ChildSaDeleted)] == [int.from_bytes(old.spi_in, "big")]


def test_a_rekey_event_starts_at_its_request_first_sent():
    a, b, w, clock = establish()
    sa_a = a.established()[0]
    (old,) = sa_a.children.values()
    a.drain_events()
    t0, dropped = clock.now, []

    def drop_first_answer(d: Datagram):
        if d.src == B and not dropped:
            dropped.append(d)
            return None
        return d
    w.tamper = drop_first_answer
    w.run(a.rekey_child(sa_a, old.spi_in))
    clock.advance(1.1)
    w.tick()  # the request again; the answer this time
    (e,) = of(a.drain_events(), ChildSaEstablished)
    assert e.rekeyed_spi is not None and e.started == t0 and clock.now - e.started == pytest.approx(1.1)


@pytest.mark.rfc(7296, "2.8.1", "SHOULD")
@pytest.mark.parametrize("seed", range(4))
def test_simultaneous_child_rekey(seed):
    a, b, w, _ = establish(seed=seed)
    sa_a, sa_b = a.established()[0], b.established()[0]
    (old_a,) = sa_a.children.values()
    ra = a.rekey_child(sa_a, old_a.spi_in)
    rb = b.rekey_child(sa_b, old_a.spi_out)
    w.run(ra + rb)  # both requests are on the wire before either response
    sa_a, sa_b = mirrored(a, b)
    assert len(sa_a.children) == 1 and old_a.spi_in not in sa_a.children
    assert not of(a.drain_events() + b.drain_events(), ExchangeFailed)


@pytest.mark.rfc(7296, "2.8", "MUST")
@pytest.mark.parametrize("who", ["initiator", "responder"])
def test_rekey_ike_sa(who):
    a, b, w, _ = establish()
    x = a if who == "initiator" else b
    old = x.established()[0]
    (child,) = old.children.values()
    w.run(x.rekey_ike(old))
    sa_a, sa_b = mirrored(a, b)
    assert (sa_a.spi_i, sa_a.spi_r) != (old.spi_i, old.spi_r) and sa_a.keys.sk_d != old.keys.sk_d
    assert set(sa_a.children) | set(sa_b.children) >= {child.spi_in} and len(a.sas) == len(b.sas) == 1
    assert x.established()[0].original_initiator  # the rekey's initiator is the new SA's initiator
    y = b if x is a else a
    assert any(isinstance(e, IkeSaEstablished) and e.rekeyed_from == old.spi_i + old.spi_r and e.we_initiated
               for e in x.drain_events())
    assert any(isinstance(e, IkeSaEstablished) and e.rekeyed_from is not None and e.we_initiated is False
               for e in y.drain_events())
    w.run(a.create_child(sa_a))  # the new SA works, Message IDs start again at 0
    assert len(mirrored(a, b)[0].children) == 2


@pytest.mark.rfc(7296, "2.8.2", "SHOULD")
@pytest.mark.parametrize("seed", range(4))
def test_simultaneous_ike_rekey(seed):
    a, b, w, _ = establish(seed=seed)
    ra, rb = a.rekey_ike(a.established()[0]), b.rekey_ike(b.established()[0])
    w.run(ra + rb)
    sa_a, sa_b = mirrored(a, b)
    assert len(sa_a.children) == 1 and len(a.sas) == 1 and len(b.sas) == 1


@pytest.mark.rfc(7296, "1.4.1", "MUST")
def test_delete_child_and_ike_sa_and_liveness():
    a, b, w, _ = establish()
    sa_a = a.established()[0]
    a.drain_events(), b.drain_events()
    w.run(a.liveness(sa_a))
    assert len(w.log) == 6
    (asked,) = of(a.drain_events(), Informational)  # the answer, as a's record of the exchange
    (told,) = of(b.drain_events(), Informational)   # the request, as b's
    assert (asked.asked_by_us, asked.payloads, told.asked_by_us, told.payloads) == (True, (), False, ())
    assert asked.message_id == told.message_id
    (c,) = sa_a.children.values()
    w.run(b.delete_child(b.established()[0], c.spi_out))
    assert not mirrored(a, b)[0].children
    events = a.drain_events()
    assert of(events, Informational)[0].payloads == ("D",)
    assert of(events, ChildSaDeleted)[0].spi_in == int.from_bytes(c.spi_in, "big")
    w.run(a.delete_ike(sa_a))
    assert not a.sas and not b.sas
    assert of(b.drain_events(), IkeSaDeleted)[0].reason == "deleted by the peer"


@pytest.mark.rfc(7296, "2.1", "MUST")
def test_retransmission_and_cached_response():
    dropped, from_b = [], []

    def drop_first_auth_response(d: Datagram):
        if d.src == B:
            from_b.append(d)
            if len(from_b) == 2:  # the IKE_AUTH response
                dropped.append(d)
                return None
        return d
    a, b, w, clock = pair(cfg("moon"), cfg("sun"), tamper=drop_first_auth_response)
    w.run(a.initiate(B))
    assert dropped and not a.established() and b.established()
    clock.advance(0.5)
    assert w.tick() == 0
    clock.advance(0.6)
    w.tick()  # IKE_AUTH request again; the responder resends its cached response unprocessed
    mirrored(a, b)
    assert w.log[-1].data == dropped[0].data
    assert len(of(b.drain_events(), ChildSaEstablished)) == 1
    started = of(a.drain_events(), IkeSaEstablished)[0].started
    assert clock.now - started == pytest.approx(1.1), "the IKE SA's exchange began at IKE_SA_INIT, 1.1 s before it ended"


def test_duplicate_request_gets_identical_response():
    a, b, w, _ = establish(tamper=lambda d: [d, d] if d.src == A else d)
    mirrored(a, b)
    responses = [d.data for d in w.log if d.src == B]
    assert len(responses) == 4 and responses[0] == responses[1] and responses[2] == responses[3]


@pytest.mark.rfc(7296, "2.4", "SHOULD")
def test_peer_dead_after_retransmissions():
    a, b, w, clock = establish()
    w.tamper = lambda d: None
    w.run(a.liveness(a.established()[0]))
    for _ in range(40):
        clock.advance(1.0)
        w.tick()
    assert of(a.drain_events(), PeerDead) and not a.sas
    assert 1 <= sum(1 for d in w.log[4:] if d.src == A) - 1 <= 5


@pytest.mark.rfc(7296, "2.3", "MUST")
def test_window_size_allows_parallel_requests():
    a, b, w, _ = establish(cfg("moon", window_size=3), cfg("sun", window_size=3))
    sa_a = a.established()[0]
    assert sa_a.window.window_size == 3
    out = a.create_child(sa_a) + a.create_child(sa_a) + a.create_child(sa_a) + a.create_child(sa_a)
    assert len(out) == 3 and len(sa_a.queue) == 1
    w.run(out)
    assert len(mirrored(a, b)[0].children) == 5


@pytest.mark.rfc(7296, "2.3", "MUST")
def test_window_size_one_queues():
    a, b, w, _ = establish()
    sa_a = a.established()[0]
    out = a.create_child(sa_a) + a.create_child(sa_a)
    assert len(out) == 1
    w.run(out)
    assert len(mirrored(a, b)[0].children) == 3


@pytest.mark.rfc(7296, "2.23", "MUST")
def test_nat_detection_switches_to_4500():
    nat_ip = ("198.18.100.1", 40000)

    def nat(d: Datagram):  # the initiator sits behind a NAT: rewrite its source, map answers back
        if d.src[0] == A[0]:
            return Datagram(d.data, (nat_ip[0], nat_ip[1] + (d.src[1] == 4500)), d.dst)
        if d.dst[0] == nat_ip[0]:
            return Datagram(d.data, d.src, (A[0], 500 if d.dst[1] == nat_ip[1] else 4500))
        return d
    a, b, w, _ = pair(cfg("moon"), cfg("sun"), tamper=nat)
    w.run(a.initiate(B))
    sa_a, sa_b = mirrored(a, b)
    assert of(a.drain_events(), NatDetected)[0].local_behind_nat
    assert of(b.drain_events(), NatDetected)[0].remote_behind_nat
    assert sa_a.remote == (B[0], 4500) and w.log[2].dst == (B[0], 4500)
    assert all(c.udp_encap for c in sa_a.children.values())


@pytest.mark.rfc(7296, "2.23", "MUST")
@pytest.mark.parametrize("faker", ["initiator", "responder"])
def test_fake_natd_forces_udp_encapsulation_on_both_ends(faker):
    forced = cfg("moon" if faker == "initiator" else "sun", bugs=Bugs(fake_natd=True))
    a, b, w, _ = establish(*((forced, None) if faker == "initiator" else (None, forced)))
    sa_a, sa_b = mirrored(a, b)
    assert sa_a.remote[1] == 4500 and w.log[2].dst[1] == 4500  # IKE_AUTH on 4500 without a NAT between them
    assert all(c.udp_encap for c in sa_a.children.values()) and all(c.udp_encap for c in sa_b.children.values())


def test_skip_natd_bug_means_no_detection():
    a, b, w, _ = establish(cfg("moon", bugs=Bugs(skip_natd=True)))
    mirrored(a, b)
    assert not of(b.drain_events(), NatDetected)


@pytest.mark.rfc(7296, "3.10.1", "MUST")
@pytest.mark.parametrize("bugs,notify,side", [
    (Bugs(nonce_length=8), "INVALID_SYNTAX", "responder"),
    (Bugs(ke_group_mismatch=20), "INVALID_KE_PAYLOAD", "responder"),
    (Bugs(bad_ke_data=True), "INVALID_SYNTAX", "responder"),
    (Bugs(extra_unknown_critical_payload=True), "UNSUPPORTED_CRITICAL_PAYLOAD", "responder"),
])
def test_initiator_bugs_draw_error_notifies(bugs, notify, side):
    a, b, w, _ = establish(cfg("moon", bugs=bugs), cfg("sun"))
    assert not a.established()
    assert notify in [e.notify for e in of(b.drain_events(), ExchangeFailed)]


def test_responder_choosing_unoffered_transform_is_rejected():
    a, b, w, _ = establish(cfg("moon"), cfg("sun", bugs=Bugs(choose_unoffered_transform=True)))
    assert not a.sas
    assert [e.notify for e in of(a.drain_events(), ExchangeFailed)] == ["NO_PROPOSAL_CHOSEN"]


@pytest.mark.rfc(7296, "3.10.1", "MAY")
def test_invalid_message_id_reported():
    a, b, w, _ = establish()
    a.config.bugs.message_id_offset = 7
    w.run(a.liveness(a.established()[0]))
    assert "INVALID_MESSAGE_ID" in [e.notify for e in of(a.drain_events(), ExchangeFailed) if e.received]


@pytest.mark.rfc(7296, "2.21.4", "MAY")
def test_invalid_ike_spi_answered():
    a, b, w, _ = establish()
    sa_a = a.established()[0]
    b.remove_sa(b.established()[0], "forgotten (simulated reboot)")
    w.run(a.liveness(sa_a))
    assert "INVALID_IKE_SPI" in [e.notify for e in of(a.drain_events(), ExchangeFailed) if e.received]


@pytest.mark.rfc(7296, "2.5", "MUST")
def test_invalid_major_version():
    def bump(d: Datagram):
        if d.src == A and d.data[17] == 0x20:
            return Datagram(d.data[:17] + b"\x30" + d.data[18:], d.src, d.dst)
        return d
    a, b, w, _ = establish(tamper=bump)
    assert not b.sas and not a.sas
    assert [(e.notify, e.received) for e in of(a.drain_events(), ExchangeFailed)] == [("INVALID_MAJOR_VERSION", True)]


def test_child_sa_not_found_and_temporary_failure():
    a, b, w, _ = establish()
    sa_a, sa_b = a.established()[0], b.established()[0]
    (c,) = sa_a.children.values()
    del sa_b.children[c.spi_out]  # the responder lost the Child SA
    w.run(a.rekey_child(sa_a, c.spi_in))
    assert "CHILD_SA_NOT_FOUND" in [e.notify for e in of(a.drain_events(), ExchangeFailed)]
    sa_b.state = State.DELETING
    w.run(a.create_child(sa_a))
    assert "TEMPORARY_FAILURE" in [e.notify for e in of(a.drain_events(), ExchangeFailed)]


def test_export_json_and_wireshark():
    a, b, w, _ = establish(cfg("moon", ike="aes128-sha256-modp2048", esp="aes128-sha256"),
                           cfg("sun", ike="aes128-sha256-modp2048", esp="aes128-sha256"))
    ex = a.export()
    (ike,) = ex["ike_sas"]
    sa = a.established()[0]
    assert ike["spi_i"] == sa.spi_i.hex() and ike["sk_ei"] == sa.keys.sk_ei.hex() and ike["integrity"] == "AUTH_HMAC_SHA2_256_128"
    assert len(ex["ipsec_sas"]) == 2 and {s["protocol"] for s in ex["ipsec_sas"]} == {"esp"}
    assert sa.ike_keys.wireshark_line().count(",") == 7
    assert b.export()["ike_sas"] == ex["ike_sas"]


def test_deterministic_with_seeded_rng():
    logs = []
    for _ in range(2):
        a, b, w, _ = establish(seed=42)
        logs.append([d.data for d in w.log])
    assert logs[0] == logs[1]


@pytest.mark.rfc(7296, "3.10.1", "MUST")
@pytest.mark.parametrize("notify", ["SINGLE_PAIR_REQUIRED", "INTERNAL_ADDRESS_FAILURE", "FAILED_CP_REQUIRED",
                                    "TEMPORARY_FAILURE", "NO_ADDITIONAL_SAS", "TS_UNACCEPTABLE"])
def test_child_refusals_received_keep_ike_sa(notify):
    a, b, w, _ = establish(cfg("moon"), cfg("sun", bugs=Bugs(refuse_child=notify)))
    sa_a, _ = mirrored(a, b)
    assert not sa_a.children
    assert [(e.notify, e.received) for e in of(a.drain_events(), ExchangeFailed)] == [(notify, True)]
    w.run(a.create_child(sa_a))
    assert [(e.notify, e.received) for e in of(a.drain_events(), ExchangeFailed)] == [(notify, True)]
    assert a.established()


@pytest.mark.rfc(7296, "2.21.4", "SHOULD")
def test_invalid_spi_reported_and_received():
    a, b, w, _ = establish()
    w.run(a.report_invalid_spi(a.established()[0], 0x12345678))
    (e,) = of(b.drain_events(), ExchangeFailed)
    assert (e.notify, e.received) == ("INVALID_SPI", True) and b.established()


def test_wrong_spi_r_bug_draws_invalid_ike_spi_hint():
    a, b, w, _ = establish(cfg("moon", bugs=Bugs(wrong_spi_r=True)))
    assert not a.established() and not b.established()
    assert [(e.notify, e.received) for e in of(a.drain_events(), ExchangeFailed)] == [("INVALID_IKE_SPI", True)]


@pytest.mark.rfc(7383, "2.5", "MUST")
@pytest.mark.parametrize("both", [True, False], ids=["both-support", "responder-without"])
def test_ike_auth_fragmentation(pki, creds, both):
    big = creds["rsa2048"]

    def c(side, frag):
        return cfg(side, psk=None, credential=big[side], trust_anchor=pki.ca_cert, fragment_size=576, fragmentation=frag)
    a, b, w, clock = establish(c("moon", True), c("sun", both))
    mirrored(a, b)
    auth = [d for d in w.log if d.data[18] == 35]
    if both:
        assert len(auth) >= 4 and all(len(d.data) <= 576 for d in auth) and all(d.data[16] == 53 for d in auth)
    else:
        assert len(auth) == 2 and all(len(d.data) > 576 and d.data[16] == 46 for d in auth)


@pytest.mark.rfc(7383, "2.6", "MUST")
def test_fragmented_request_retransmitted_once_answered(pki, creds):
    big = creds["rsa2048"]
    seen = []

    def drop_responses_once(d: Datagram):
        if d.src == B and d.data[18] == 35 and not seen:
            seen.append(d)
            return None
        return d
    ca = cfg("moon", psk=None, credential=big["moon"], trust_anchor=pki.ca_cert, fragment_size=576)
    cb = cfg("sun", psk=None, credential=big["sun"], trust_anchor=pki.ca_cert, fragment_size=576)
    a, b, w, clock = pair(ca, cb, tamper=drop_responses_once)
    w.run(a.initiate(B))
    assert not a.established()
    n_resp = sum(1 for d in w.log if d.src == B and d.data[18] == 35)
    clock.advance(1.0)
    w.tick()
    mirrored(a, b)
    again = sum(1 for d in w.log if d.src == B and d.data[18] == 35) - n_resp
    assert again == n_resp  # the whole response once more, not once per request fragment


def test_corrupt_icv_is_dropped_and_peer_declared_dead():
    a, b, w, clock = establish()
    a.config.bugs.corrupt_icv = True
    w.run(a.liveness(a.established()[0]))
    assert len(w.log) == 5  # the request went out; the responder dropped it silently
    for _ in range(40):
        clock.advance(1.0)
        w.tick()
    assert of(a.drain_events(), PeerDead) and b.established()


@pytest.mark.rfc(7296, "1.3", "MUST")
def test_invalid_ke_payload_retry_in_create_child_sa():
    a, b, w, _ = establish(cfg("moon", esp="aes128gcm16-noesn"), cfg("sun", esp="aes128gcm16-noesn-x25519"))
    sa_a = a.established()[0]
    a.drain_events()
    w.run(a.create_child(sa_a, proposals=parse_proposals("aes128gcm16-noesn-ecp256-x25519", "esp")))
    sa_a, _ = mirrored(a, b)
    assert [c.suite.ke.name for c in sa_a.children.values() if c.suite.ke] == ["CURVE25519"]
    events = a.drain_events()  # a retried exchange, not a failed one: the caller waiting for the Child SA goes on
    assert [(e.exchange, e.group) for e in of(events, KeRetry)] == [("CREATE_CHILD_SA", 31)] and not of(events, ExchangeFailed)


def test_wireshark_tables():
    a, b, w, _ = establish(cfg("moon", ike="aes128-sha256-modp2048", esp="aes128-sha256"),
                           cfg("sun", ike="aes128-sha256-modp2048", esp="aes128-sha256"))
    t = a.wireshark()
    assert len(t["ikev2_decryption_table"]) == 1 and len(t["esp_sa"]) == 2
    assert all('"AES-CBC [RFC3602]"' in line for line in t["esp_sa"])
    a, b, w, _ = establish(cfg("moon", ike="chacha20poly1305-prfsha256-x25519", esp="chacha20poly1305"),
                           cfg("sun", ike="chacha20poly1305-prfsha256-x25519", esp="chacha20poly1305"))
    assert a.wireshark() == {"ikev2_decryption_table": [], "esp_sa": []}  # Wireshark 4.0 has no ChaCha20 tables


@pytest.mark.parametrize("text,proto", [("aes128-aes256-sha256-sha1-prfsha256-ecp256-modp2048-x25519", "ike"),
                                        ("aes128-sha256-esn-noesn,aes256gcm16-noesn-ecp384", "esp"),
                                        ("sha256-sha512", "ah")])
def test_proposals_round_trip_through_the_codec(text, proto):
    from harness.ike import view
    from harness.ike.message import Header, Message
    props = [p.__class__(p.protocol, p.transforms, b"\x01\x02\x03\x04" if proto != "ike" else b"", p.number)
             for p in parse_proposals(text, proto)]
    raw = Message(Header(b"i" * 8, b"r" * 8, 34, 0), [view._sa_payload(props)]).encode()
    assert view.decode(raw, None, None).sa == props


def test_half_open_sa_expires_on_the_responder():
    dropped = []

    def drop_auth(d: Datagram):
        if d.data[18] == 35:
            dropped.append(d)
            return None
        return d
    a, b, w, clock = pair(cfg("moon", bugs=Bugs(no_retransmit=True)), cfg("sun", half_open_timeout=10.0),
                          tamper=drop_auth)
    w.run(a.initiate(B))
    assert len(b.sas) == 1 and b.next_timer() == clock.now + 10.0
    clock.advance(10.0)
    w.tick()
    assert not b.sas and not b.half_open
    assert of(b.drain_events(), IkeSaDeleted)[0].reason.startswith("half-open")


def test_certreq_names_the_trust_anchor(pki, creds):
    from harness.ike import view
    from harness.ike.certs import ca_key_hash
    a, b, w, _ = establish(cfg("moon", psk=None, credential=creds["p256"]["moon"], trust_anchor=pki.ca_cert),
                           cfg("sun", psk=None, credential=creds["p256"]["sun"], trust_anchor=pki.ca_cert))
    mirrored(a, b)
    init_resp = view.decode(w.log[1].data, None, None)
    assert init_resp.certreq == [(4, ca_key_hash(pki.ca_cert))] and len(ca_key_hash(pki.ca_cert)) == 20


@pytest.mark.rfc(7296, "3.13.1", "MUST")
def test_ipv6_endpoints_and_selectors():
    a6, b6 = ("2001:db8::1", 500), ("2001:db8::2", 500)
    clock = FakeClock()
    a = IkeEndpoint(cfg("moon", mode="transport"), a6, clock, seeded_rng(5))
    b = IkeEndpoint(cfg("sun", mode="transport"), b6, clock, seeded_rng(6))
    w = Wire(a, b)
    w.run(a.initiate(b6))
    (sa_a,), (sa_b,) = a.established(), b.established()
    (c,) = sa_a.children.values()
    assert c.ts_local == (TS.of("2001:db8::1"),) and c.ts_remote == (TS.of("2001:db8::2"),)
    inbound, outbound = c.sa_keys(a6[0], b6[0])
    assert outbound.dst == "2001:db8::2" and sa_b.children[c.spi_out].sa_keys(b6[0], a6[0])[0] == outbound


def test_bends_reach_the_messages_a_case_names() -> None:
    """Bugs.bends applies a Bend to every message of one exchange and direction the built-in end sends."""
    from harness.ike.bend import Bend
    from harness.ike.config import Bugs, IkeConfig
    from harness.ike.endpoint import IkeEndpoint
    from harness.ike.message import Header
    from harness.ike.auth import Identity

    bugs = Bugs(bends=(("IKE_SA_INIT request", Bend("header_flags", value=0x01)),))
    ep = IkeEndpoint(IkeConfig(local_id=Identity.of("198.18.0.2"), psk=b"k" * 20, bugs=bugs), ("198.18.0.2", 500))
    (dgram,) = ep.initiate(("198.18.0.3", 500))
    plain = IkeEndpoint(IkeConfig(local_id=Identity.of("198.18.0.2"), psk=b"k" * 20), ("198.18.0.2", 500))
    (normal,) = plain.initiate(("198.18.0.3", 500))
    assert dgram.data[19] == normal.data[19] | 0x01 and Header.decode(normal.data).exchange_type == 34


@pytest.mark.rfc(7296, "2.5", "MUST")
def test_a_probe_answered_protected_takes_the_message_id_and_one_dropped_does_not():
    a, b, w, _ = establish()
    sa = a.established()[0]
    a.drain_events()
    critical = Bend("insert_unknown", index=-1, value=200, critical=True, data=b"x", inner=True)
    w.run(a.probe(sa, [critical]))
    (answer,) = of(a.drain_events(), ProbeAnswered)
    assert (answer.protected, answer.payloads) == (True, ("UNSUPPORTED_CRITICAL_PAYLOAD",))
    assert sa.window.next_id == answer.message_id + 1 and not sa.pending
    sent = len(w.log)
    w.run(a.probe(sa, [Bend("sk_icv_flip", index=0)]))  # b drops it (RFC 7296 s2.21.2): no answer, no Message ID used
    assert len(w.log) == sent + 1 and sa.window.next_id == answer.message_id + 1
    w.run(a.liveness(sa))
    (done,) = of(a.drain_events(), Informational)
    assert done.message_id == answer.message_id + 1 and not of(a.drain_events(), ProbeAnswered)
    with pytest.raises(IkeError, match="outstanding"):
        a.liveness(sa)
        a.probe(sa, [critical])


@pytest.mark.rfc(7296, "2.4", "MAY")
@pytest.mark.parametrize("on", [False, True])
def test_initial_contact_goes_in_the_ike_auth_request_when_configured(on: bool):
    from harness.ike import view

    a, b, w, _ = establish(cfg("moon", initial_contact=on), cfg("sun"))
    sa_b, = b.established()
    auth = view.decode(w.log[2].data, view.sk_keys(sa_b, sending=False), None)
    assert auth.exchange == 35 and (auth.notify("INITIAL_CONTACT") is not None) == on


@pytest.mark.rfc(7383, "2.6", "MUST")
@pytest.mark.parametrize("ops,order", [((("reverse", 0),), (2, 1)), ((("duplicate", 2),), (1, 2, 2)),
                                       ((("drop", 1),), (2,))], ids=["reordered", "duplicated", "lost"])
def test_fragment_sends_shape_the_first_sending_only(pki, creds, ops, order):
    """Bugs.fragment_sends: the first sending of a fragmented request as asked, its retransmission whole and in order."""
    from harness.ike.events import FragmentReceived, FragmentsSent

    big = creds["rsa2048"]
    ca = cfg("moon", psk=None, credential=big["moon"], trust_anchor=pki.ca_cert, fragment_size=576,
             bugs=Bugs(fragment_sends=ops))
    cb = cfg("sun", psk=None, credential=big["sun"], trust_anchor=pki.ca_cert, fragment_size=576)
    a, b, w, clock = pair(ca, cb)
    w.run(a.initiate(B))
    (sent,) = [e for e in of(a.drain_events(), FragmentsSent) if e.exchange == "IKE_AUTH"]
    assert len(sent.sizes) == 2 and all(n <= 576 for n in sent.sizes)

    def numbers() -> list[int]:
        return [int.from_bytes(d.data[32:34], "big") for d in w.log if d.src == A and d.data[18] == 35]
    assert numbers() == list(order)
    received = [(e.number, e.total) for e in of(b.drain_events(), FragmentReceived) if not e.response]
    assert received == [(n, 2) for n in dict.fromkeys(order)]  # a copy after the whole message is answered unopened
    if set(order) == {1, 2}:
        mirrored(a, b)
        return
    assert not a.established() and not b.established()  # fragment 1 never came: nothing answered
    clock.advance(1.0)
    w.tick()
    assert numbers() == [*order, 1, 2]  # RFC 7383 s2.6: the retransmission resends every fragment
    mirrored(a, b)


def test_fragment_sends_beyond_the_fragments_is_a_config_error(pki, creds):
    from harness.errors import ConfigError

    for bad in ((("drop", 0),), (("shuffle", 1),), ("drop",)):
        with pytest.raises(ConfigError, match="fragment_sends"):
            Bugs(fragment_sends=bad)  # type: ignore[arg-type]
    from harness.ike.config import fragment_order
    assert fragment_order(4, (("reverse", 0), ("duplicate", 3), ("drop", 1))) == [4, 3, 3, 2]
    big = creds["rsa2048"]
    a, b, w, _ = pair(cfg("moon", psk=None, credential=big["moon"], trust_anchor=pki.ca_cert, fragment_size=576,
                          bugs=Bugs(fragment_sends=(("drop", 9),))),
                      cfg("sun", psk=None, credential=big["sun"], trust_anchor=pki.ca_cert, fragment_size=576))
    with pytest.raises(ConfigError, match="has 2 fragments"):
        w.run(a.initiate(B))


@pytest.mark.rfc(7296, "3.6", "MUST")
def test_certificate_chain_both_ways():
    """Each end's certificate from its own intermediate under one root; each trusts the root only and sends its
    intermediate in a second CERT payload."""
    root = TestPki(name="CN=endpoint root,O=ipsec-interop", path_length=1)
    cred = {side: root.intermediate(f"CN={side} CA,O=ipsec-interop").issue(f"CN={side},O=ipsec-interop",
                                                                           [f"{side}.example"])
            for side in ("moon", "sun")}
    a, b, w, _ = establish(cfg("moon", psk=None, credential=cred["moon"], trust_anchor=root.ca_cert),
                           cfg("sun", psk=None, credential=cred["sun"], trust_anchor=root.ca_cert))
    mirrored(a, b)
    bare = {side: cred[side].__class__(cred[side].key, cred[side].cert, cred[side].identities) for side in cred}
    a, b, w, _ = establish(cfg("moon", psk=None, credential=bare["moon"], trust_anchor=root.ca_cert),
                           cfg("sun", psk=None, credential=cred["sun"], trust_anchor=root.ca_cert))
    assert not b.established()
    assert [e.notify for e in of(b.drain_events(), ExchangeFailed)] == ["AUTHENTICATION_FAILED"]


# ---- RFC 6023: childless IKE SAs ----------------------------------------------------------------------

def _payloads_of(w: Wire, exchange: int, ep: IkeEndpoint, sa) -> list:
    """The decoded messages of one exchange on the wire (requests and responses), read with sa's keys at ep."""
    from harness.ike import view
    return [view.decode(d.data, view.sk_keys(sa, sending=d.src == ep.local), None)
            for d in w.log if view.peek(d.data).exchange == exchange]


@pytest.mark.parametrize("policy", ["allow", "force"])
def test_childless_ike_sa_then_create_child_sa(policy):
    from harness.ike import view
    from harness.ike.events import ChildlessIkeSa
    a, b, w, _ = pair(cfg("moon", childless=policy), cfg("sun"))
    w.run(a.initiate(B, childless=policy == "allow"))
    sa_a, sa_b = a.established()[0], b.established()[0]
    assert not sa_a.children and not sa_b.children
    ea, eb = a.drain_events(), b.drain_events()
    assert of(ea, ChildlessIkeSa) == [ChildlessIkeSa(True, True)] and of(eb, ChildlessIkeSa) == [ChildlessIkeSa(False, True)]
    assert not of(ea + eb, ChildSaEstablished)
    auth = _payloads_of(w, view.IKE_AUTH, a, sa_a)
    assert len(auth) == 2
    for m in auth:  # RFC 6023 s3: neither IKE_AUTH message has SA, TSi or TSr
        assert m.sa is None and m.ts_i is None and m.ts_r is None
    inits = [view.decode(d.data, None, None) for d in w.log if view.peek(d.data).exchange == view.IKE_SA_INIT]
    assert all(m.notify("CHILDLESS_IKEV2_SUPPORTED") is not None for m in inits)
    w.run(a.create_child(sa_a))  # RFC 7296 s1.3.1: the Child SA comes with CREATE_CHILD_SA
    ca, cb = of(a.drain_events(), ChildSaEstablished), of(b.drain_events(), ChildSaEstablished)
    assert len(ca) == len(cb) == 1 and ca[0].inbound.spi == cb[0].outbound.spi


def test_childless_responder_may_create_the_child_sa():
    a, b, w, _ = pair(cfg("moon"), cfg("sun"))
    w.run(a.initiate(B, childless=True))
    w.run(b.create_child(b.established()[0]))
    assert len(a.established()[0].children) == len(b.established()[0].children) == 1


def test_childless_asked_of_a_responder_that_never_announces():
    a, b, w, _ = pair(cfg("moon"), cfg("sun", childless="never"))
    w.run(a.initiate(B, childless=True))
    failed = of(a.drain_events(), ExchangeFailed)
    assert failed and "did not announce CHILDLESS_IKEV2_SUPPORTED" in failed[0].message
    assert not a.established()  # nothing sent after IKE_SA_INIT: the responder's half-open SA times out


def test_childless_unannounced_bug_sends_it_anyway_and_never_responder_refuses_the_child():
    from harness.ike.events import ChildlessIkeSa
    a, b, w, _ = pair(cfg("moon", bugs=Bugs(childless_unannounced=True)), cfg("sun", childless="never"))
    w.run(a.initiate(B, childless=True))
    assert not of(b.drain_events(), ChildlessIkeSa)
    assert [f.notify for f in of(a.drain_events(), ExchangeFailed)] == ["INVALID_SYNTAX"]
    assert not a.established() and not b.established()  # RFC 7296 s2.21.2: INVALID_SYNTAX in IKE_AUTH ends the IKE SA


def test_regular_ike_auth_still_makes_the_first_child_sa():
    from harness.ike.events import ChildlessIkeSa
    a, b, w, _ = pair(cfg("moon"), cfg("sun"))
    w.run(a.initiate(B))
    assert not of(a.drain_events() + b.drain_events(), ChildlessIkeSa)
    assert len(a.established()[0].children) == 1


def test_childless_policy_is_checked():
    with pytest.raises(Exception, match="childless"):
        cfg("moon", childless="sometimes")


@pytest.mark.rfc(7296, "2.23.1", "MUST")
def test_transport_mode_tsi_substituted_by_the_nat_address_is_recognised():
    from harness.ike.child import substituted

    assert substituted([TS.of("198.18.1.1/32")], "198.18.1.3")  # the NAT's address in place of ours
    assert not substituted([TS.of("198.18.1.3/32")], "198.18.1.3")  # the responder's own address: no substitution
    assert not substituted([TS.of("198.18.1.0/24")], "198.18.1.3")  # a range is narrowing, checked as such
    assert not substituted([TS.of("198.18.1.1/32"), TS.of("198.18.1.2/32")], "198.18.1.3")


@pytest.mark.rfc(7296, "2.15", "MUST")
def test_a_stale_cookie_does_not_make_a_second_retry_while_the_first_is_out():
    """A COOKIE answering an older request (e.g. a retransmission sent before the first COOKIE was taken) is not
    followed while the retry with the first cookie is out unrepeated: the responder answers that retry, and the AUTH
    must sign it (measured: charon failed the AUTH with 'MAC mismatched' when a second retry had gone out)."""
    from harness.ike import view
    from harness.ike.view import IKE_SA_INIT, Msg, Notify

    a, b, w, clock = pair(cfg("moon"), cfg("sun", require_cookie=True))
    m0 = a.initiate(B)
    c1 = b.process(m0[0].data, A, B)
    m1 = a.process(c1[0].data, B, A)
    assert len(m1) == 1 and len(of(a.drain_events(), CookieRetry)) == 1
    spi_i = m0[0].data[:8]
    stale = view.encode(Msg(IKE_SA_INIT, 0, True, False, spi_i, bytes(8), notifies=[Notify("COOKIE", b"\x05" * 24)]),
                        None, a.rng)[0]
    assert a.process(stale, B, A) == [] and not of(a.drain_events(), CookieRetry)
    w.run([Datagram(d.data, d.src, d.dst) for d in b.process(m1[0].data, A, B)])
    assert len(a.established()) == 1 and len(b.established()) == 1


def test_a_new_cookie_is_taken_once_the_retry_was_sent_again():
    from harness.ike import view
    from harness.ike.view import IKE_SA_INIT, Msg, Notify

    a, b, w, clock = pair(cfg("moon"), cfg("sun", require_cookie=True))
    m0 = a.initiate(B)
    a.process(b.process(m0[0].data, A, B)[0].data, B, A)
    clock.advance(1.0)
    assert len(a.tick()) == 1  # the retry with the first cookie, sent again
    fresh = view.encode(Msg(IKE_SA_INIT, 0, True, False, m0[0].data[:8], bytes(8),
                            notifies=[Notify("COOKIE", b"\x06" * 24)]), None, a.rng)[0]
    (m2,) = a.process(fresh, B, A)
    assert b"\x06" * 24 in m2.data and len(of(a.drain_events(), CookieRetry)) == 2
