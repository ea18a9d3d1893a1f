"""Differential codec check against scapy's independent IKEv2 layer (scapy.contrib.ikev2), both directions."""
from __future__ import annotations

import ipaddress

import pytest

from harness.ike.message import IKE_SA_INIT, Header, Message
from harness.ike.payloads import (CERTREQ, KE, SA, Attribute, D, IDi, Nonce, Notify, Proposal, Selector, Transform,
                                  TSi, V)

ikev2 = pytest.importorskip("scapy.contrib.ikev2", reason="scapy is not installed")
from scapy.compat import raw  # noqa: E402

SPI_I, SPI_R = b"\x01" * 8, b"\x02" * 8


def test_scapy_dissects_what_we_encode():
    m = Message(Header(SPI_I, SPI_R, IKE_SA_INIT, 0, initiator=True), [
        SA([Proposal(1, 1, b"", [Transform(1, 12, [Attribute(14, 256)]), Transform(4, 19)])]),
        KE(19, b"k" * 64), Nonce(b"n" * 32), Notify("COOKIE", b"c" * 16),
        TSi([Selector(ipaddress.ip_address("198.18.0.1"), ipaddress.ip_address("198.18.0.9"), 17, 500, 501)]),
        IDi(2, b"x.example"), D(3, [b"\x01\x02\x03\x04"]), V(b"vid"), CERTREQ(4, bytes(20))])
    p = ikev2.IKEv2(m.encode())
    assert (p.init_SPI, p.resp_SPI, p.exch_type, p.id, p.length) == (SPI_I, SPI_R, 34, 0, len(m.encode()))
    prop = p[ikev2.IKEv2_SA].prop
    assert (prop.proposal, prop.proto, prop.trans_nb) == (1, 1, 2)
    t = prop.trans
    assert (t.transform_type, t.transform_id, t.key_length) == (1, 12, 256)
    assert (t.payload.transform_type, t.payload.transform_id) == (4, 19)
    assert (p[ikev2.IKEv2_KE].group, p[ikev2.IKEv2_KE].ke) == (19, b"k" * 64)
    assert p[ikev2.IKEv2_Nonce].nonce == b"n" * 32
    assert (p[ikev2.IKEv2_Notify].type, p[ikev2.IKEv2_Notify].notify) == (16390, b"c" * 16)
    ts = p[ikev2.IKEv2_TSi].traffic_selector[0]
    assert (ts.IP_protocol_ID, ts.start_port, ts.end_port, ts.starting_address_v4, ts.ending_address_v4) == \
        (17, 500, 501, "198.18.0.1", "198.18.0.9")
    assert (p[ikev2.IKEv2_IDi].IDtype, p[ikev2.IKEv2_IDi].ID) == (2, b"x.example")
    assert (p[ikev2.IKEv2_Delete].proto, p[ikev2.IKEv2_Delete].SPI) == (3, [b"\x01\x02\x03\x04"])
    assert p[ikev2.IKEv2_VendorID].vendorID == b"vid"
    assert p[ikev2.IKEv2_CERTREQ].cert_encoding == 4


def test_we_decode_what_scapy_builds():
    p = ikev2.IKEv2(init_SPI=SPI_I, exch_type=34, flags="Initiator") / \
        ikev2.IKEv2_SA(prop=ikev2.IKEv2_Proposal(proposal=1, trans_nb=2, trans=ikev2.IKEv2_Transform(
            transform_type="Encryption", transform_id="AES-GCM-16ICV") / ikev2.IKEv2_Transform(
            transform_type="PRF", transform_id="PRF_HMAC_SHA2_256"))) / \
        ikev2.IKEv2_KE(group="256randECPgr", ke=b"k" * 64) / ikev2.IKEv2_Nonce(nonce=b"n" * 32) / \
        ikev2.IKEv2_Notify(type=16388, notify=b"x" * 20) / \
        ikev2.IKEv2_TSi(traffic_selector=[ikev2.IPv4TrafficSelector(starting_address_v4="198.18.0.1",
                                                                    ending_address_v4="198.18.0.9")]) / \
        ikev2.IKEv2_IDi(IDtype="Email_addr", ID=b"a@example") / \
        ikev2.IKEv2_Delete(proto="ESP", SPIsize=4, SPInum=1, SPI=[b"\x01\x02\x03\x04"])
    m = Message.decode(raw(p), strict=True)
    assert m.findings == [] and m.header.initiator and m.header.exchange_type == 34
    assert m.payloads == [
        SA([Proposal(1, 1, b"", [Transform(1, 20), Transform(2, 5)])]), KE(19, b"k" * 64), Nonce(b"n" * 32),
        Notify("NAT_DETECTION_SOURCE_IP", b"x" * 20),
        TSi([Selector(ipaddress.ip_address("198.18.0.1"), ipaddress.ip_address("198.18.0.9"))]),
        IDi(3, b"a@example"), D(3, [b"\x01\x02\x03\x04"])]
