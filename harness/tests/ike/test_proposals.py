"""Proposals: strongSwan syntax, responder selection (RFC 7296 s2.7, s3.3.6), initiator checks."""
from __future__ import annotations

from dataclasses import replace

import pytest

from harness.crypto import TransformType as T
from harness.errors import ConfigError, NoProposalChosen
from harness.ike.proposals import Protocol, Suite, Transform, check_chosen, parse_proposal, parse_proposals, select


@pytest.mark.parametrize("text,proto,want", [
    ("aes128gcm16-prfsha256-ecp256", "ike", [(T.ENCR, 20, 128), (T.PRF, 5, None), (T.KE, 19, None)]),
    ("aes256-sha256-modp2048", "ike", [(T.ENCR, 12, 256), (T.PRF, 5, None), (T.INTEG, 12, None), (T.KE, 14, None)]),
    ("chacha20poly1305-prfsha256-x25519", "ike", [(T.ENCR, 28, None), (T.PRF, 5, None), (T.KE, 31, None)]),
    ("aes128-sha256-esn", "esp", [(T.ENCR, 12, 128), (T.INTEG, 12, None), (T.ESN, 1, None)]),
    ("chacha20poly1305-x25519", "esp", [(T.ENCR, 28, None), (T.KE, 31, None), (T.ESN, 0, None)]),
    ("aes256gcm16-aes128gcm16", "esp", [(T.ENCR, 20, 256), (T.ENCR, 20, 128), (T.ESN, 0, None)]),
    ("sha256-noesn", "ah", [(T.INTEG, 12, None), (T.ESN, 0, None)]),
    ("aes128gmac", "ah", [(T.INTEG, 9, None), (T.ESN, 0, None)]),
])
def test_parse_strongswan_syntax(text, proto, want):
    p = parse_proposal(text, proto)
    assert sorted((t.type, t.id, t.key_bits) for t in p.transforms) == sorted(want)
    assert [t.type for t in p.transforms] == sorted(t.type for t in p.transforms)


@pytest.mark.parametrize("text,proto", [
    ("aes128-aes128gcm16-prfsha256-ecp256", "ike"), ("aes128gcm16-ecp256", "ike"), ("aes128-sha256", "ike"),
    ("aes128gcm16-sha256-prfsha256-ecp256", "ike"), ("aes128-sha256-esn-ecp256", "ike"), ("rot13-sha1", "esp"),
    ("aes128", "esp"), ("aes128-sha1", "ah"), ("aes128-sha1-prfsha1", "esp"),
])
def test_parse_rejects(text, proto):
    with pytest.raises(ConfigError):
        parse_proposal(text, proto)


OFFER = parse_proposals("aes256gcm16-aes128gcm16-prfsha384-prfsha256-ecp384-ecp256,aes128-sha256-modp2048", "ike")


@pytest.mark.rfc(7296, "2.7", "MUST")
def test_select_first_acceptable_in_initiator_order():
    local = parse_proposals("aes128-sha256-modp2048,aes128gcm16-prfsha256-ecp256", "ike")
    c = select(OFFER, local)
    assert c.number == 1 and Suite.of(c).encr.name == "ENCR_AES_GCM_16" and Suite.of(c).key_bits == 128
    assert [t.type for t in c.transforms] == [T.ENCR, T.PRF, T.KE] and check_chosen(OFFER, [c]) == c


def test_select_prefers_received_ke_group():
    local = parse_proposals("aes256gcm16-prfsha384-ecp384-ecp256", "ike")
    assert Suite.of(select(OFFER, local)).ke.name == "ECP_384"
    assert Suite.of(select(OFFER, local, prefer_ke=19)).ke.name == "ECP_256"


@pytest.mark.rfc(7296, "2.7", "MUST")
def test_no_proposal_chosen():
    with pytest.raises(NoProposalChosen) as e:
        select(OFFER, parse_proposals("chacha20poly1305-prfsha256-x25519", "ike"))
    assert e.value.notify == "NO_PROPOSAL_CHOSEN"
    with pytest.raises(NoProposalChosen):  # protocols must agree
        select(parse_proposals("aes128-sha256", "esp"), parse_proposals("sha256", "ah"))


def test_child_sa_ke_and_esn_matching():
    offered = [replace(p, spi=b"\x01\x02\x03\x04") for p in parse_proposals("aes128gcm16-esn-noesn-ecp256,aes128gcm16", "esp")]
    c = select(offered, parse_proposals("aes128gcm16-noesn", "esp"))
    assert c.number == 2 and Suite.of(c).ke is None and not Suite.of(c).esn and c.spi == b"\x01\x02\x03\x04"
    c = select(offered, parse_proposals("aes128gcm16-esn-ecp256", "esp"))
    assert c.number == 1 and Suite.of(c).esn and Suite.of(c).ke.name == "ECP_256"


@pytest.mark.rfc(7296, "3.3.6", "MUST")
@pytest.mark.parametrize("mutate,why", [
    (lambda c: [c, c], "exactly one"),
    (lambda c: [replace(c, number=7)], "not offered"),
    (lambda c: [replace(c, transforms=c.transforms + (Transform(T.KE, 19),))], "KE"),
    (lambda c: [replace(c, transforms=tuple(t for t in c.transforms if t.type != T.PRF))], "PRF"),
    (lambda c: [replace(c, transforms=(Transform(T.ENCR, 12, 256),) + c.transforms[1:])], "not offered"),
    (lambda c: [replace(c, protocol=Protocol.ESP)], "protocol"),
])
def test_initiator_rejects_bad_choice(mutate, why):
    c = select(OFFER, parse_proposals("aes128gcm16-prfsha256-ecp256", "ike"))
    with pytest.raises(NoProposalChosen, match=why):
        check_chosen(OFFER, mutate(c))


def test_child_spi_size_checked():
    offered = parse_proposals("aes128gcm16", "esp")
    with pytest.raises(NoProposalChosen, match="SPI"):
        check_chosen(offered, [select(offered, offered)])
