"""IKEv2 message codec: header, every payload, strict parsing errors and findings, bends (RFC 7296 s3)."""
from __future__ import annotations

import ipaddress
import struct

import pytest

from harness.errors import ConfigError, IkeParseError, UnknownName
from harness.ike.bend import Bend
from harness.ike.constants import NOTIFY, PAYLOAD, registry
from harness.ike.message import IKE_AUTH, IKE_SA_INIT, Header, Message
from harness.ike.payloads import (AUTH, CERT, CERTREQ, CP, EAP, KE, PAYLOAD_CLASSES, SA, SK, SKF, Attribute,
                                  ConfigAttribute, D, IDi, IDr, Nonce, Notify, Proposal, RawSelector, Selector,
                                  Transform, TSi, TSr, UnknownPayload, V)

SPI_I, SPI_R = bytes.fromhex("0011223344556677"), bytes.fromhex("8899aabbccddeeff")


def init_request(*extra) -> Message:
    """A typical IKE_SA_INIT request (SA, KE, Ni, NAT-D) plus extra payloads."""
    sa = SA([Proposal(1, 1, b"", [Transform(1, 12, [Attribute(14, 256)]), Transform(2, 5), Transform(3, 12),
                                   Transform(4, 19)])])
    return Message(Header(SPI_I, bytes(8), IKE_SA_INIT, 0, initiator=True),
                   [sa, KE(19, bytes(range(64))), Nonce(bytes(32)), Notify("NAT_DETECTION_SOURCE_IP", bytes(20)),
                    Notify("NAT_DETECTION_DESTINATION_IP", bytes(20)), *extra])


EVERY_PAYLOAD = [
    SA([Proposal(1, 3, b"\x01\x02\x03\x04", [Transform(1, 20, [Attribute(14, 128)]), Transform(5, 0)]),
        Proposal(2, 3, b"\x01\x02\x03\x04", [Transform(1, 12, [Attribute(14, 256), Attribute(99, b"tlv")])])]),
    KE(31, bytes(32)), IDi(2, b"tester.example"), IDr(1, bytes([198, 18, 0, 1])), CERT(4, b"\x30\x82"),
    CERTREQ(4, bytes(20)), AUTH(14, b"sig"), Nonce(bytes(range(16))),
    Notify("REKEY_SA", b"", 3, b"\xaa\xbb\xcc\xdd"), D(3, [b"\x01\x02\x03\x04", b"\x05\x06\x07\x08"]), D(1, []),
    V(b"vendor"),
    TSi([Selector(ipaddress.ip_address("198.18.0.0"), ipaddress.ip_address("198.19.255.255"), 17, 500, 500)]),
    TSr([Selector(ipaddress.ip_address("2001:db8::"), ipaddress.ip_address("2001:db8::ffff")),
         RawSelector(10, b"label\x00\x00\x00", 0)]),
    CP(1, [ConfigAttribute(1), ConfigAttribute(3, bytes([198, 18, 0, 53]))]),
    EAP(bytes([1, 7, 0, 5, 1])),
]


@pytest.mark.rfc(7296, "3.1", "MUST")
def test_header_layout():
    m = Message(Header(SPI_I, SPI_R, IKE_AUTH, 1, initiator=True, response=False), [Nonce(bytes(16))])
    d = m.encode()
    assert d[:16] == SPI_I + SPI_R
    assert d[16] == PAYLOAD["Nonce"] and d[17] == 0x20 and d[18] == 35 and d[19] == 0x08
    assert struct.unpack("!II", d[20:28]) == (1, len(d))
    h = Header.decode(d)
    assert (h.initiator, h.response, h.higher_version, h.message_id, h.length) == (True, False, False, 1, len(d))


@pytest.mark.parametrize("payload", EVERY_PAYLOAD, ids=lambda p: type(p).__name__)
def test_every_payload_round_trips(payload):
    m = Message(Header(SPI_I, SPI_R, IKE_AUTH, 1), [payload, Nonce(bytes(16))])
    d = m.encode()
    back = Message.decode(d, strict=True)
    assert back == m
    assert back.payloads[0].raw == payload.encode(PAYLOAD["Nonce"])
    assert back.payloads[0].offset == 28 and back.findings == []


def test_payload_classes_match_the_registry():
    for number, cls in PAYLOAD_CLASSES.items():
        assert PAYLOAD.name(number) == {"Notify": "N"}.get(cls.__name__, cls.__name__)


@pytest.mark.rfc(7296, "3.10.1", "MUST")
def test_notify_registry_names_and_numbers():
    expected = {"UNSUPPORTED_CRITICAL_PAYLOAD": 1, "INVALID_MAJOR_VERSION": 5, "INVALID_SYNTAX": 7,
                "INVALID_MESSAGE_ID": 9, "INVALID_SPI": 11, "NO_PROPOSAL_CHOSEN": 14, "INVALID_KE_PAYLOAD": 17,
                "AUTHENTICATION_FAILED": 24, "TS_UNACCEPTABLE": 38, "TEMPORARY_FAILURE": 43,
                "CHILD_SA_NOT_FOUND": 44, "INITIAL_CONTACT": 16384, "ADDITIONAL_TS_POSSIBLE": 16386,
                "NAT_DETECTION_SOURCE_IP": 16388, "NAT_DETECTION_DESTINATION_IP": 16389, "COOKIE": 16390,
                "USE_TRANSPORT_MODE": 16391, "REKEY_SA": 16393, "ESP_TFC_PADDING_NOT_SUPPORTED": 16394,
                "IKEV2_FRAGMENTATION_SUPPORTED": 16430, "SIGNATURE_HASH_ALGORITHMS": 16431}
    for name, number in expected.items():
        assert NOTIFY[name] == number and NOTIFY.name(number) == name
    assert Notify("COOKIE").type == 16390 and not Notify("COOKIE").is_error and Notify(7).is_error
    with pytest.raises(UnknownName):
        Notify("NO_SUCH_NOTIFY")


def test_registry_file_errors(tmp_path, monkeypatch):
    from harness.ike import constants
    (tmp_path / "broken.json").write_text("{\"registry\": \"x\"}")
    monkeypatch.setattr(constants, "REGISTRY_DIR", tmp_path)
    with pytest.raises(ConfigError, match="broken.json"):
        registry("broken")


def test_key_length_attribute_is_tv():
    t = Transform(1, 12, [Attribute(14, 128)])
    assert t.encode(True)[8:] == bytes.fromhex("800e0080") and t.key_length == 128


def test_idi_body_raw_is_rest_of_init_id_payload():
    m = Message(Header(SPI_I, SPI_R, IKE_AUTH, 1, initiator=True), [IDi(2, b"a.example", body_reserved=0)])
    back = Message.decode(m.encode())
    assert back.payloads[0].body_raw == bytes([2, 0, 0, 0]) + b"a.example"
    assert back.raw == m.encode()


# -- strict parsing ---------------------------------------------------------------------------------------------

def _err(data: bytes, strict: bool = False) -> IkeParseError:
    with pytest.raises(IkeParseError) as e:
        Message.decode(data, strict)
    return e.value


@pytest.mark.rfc(7296, "3.1", "MUST")
def test_header_length_must_match_datagram():
    d = init_request().encode()
    assert _err(d[:-1]).field == "Length"
    assert _err(d + b"\x00").field == "Length"
    assert _err(d[:27]).offset == 0


@pytest.mark.rfc(7296, "3.1", "MUST")
def test_major_version_above_2_is_invalid_major_version():
    e = _err(init_request().encode([Bend("major_version", value=3)]))
    assert e.notify == "INVALID_MAJOR_VERSION" and e.offset == 17


@pytest.mark.rfc(7296, "2.5", "MUST")
def test_unknown_critical_payload_is_a_typed_error_with_the_type():
    e = _err(init_request().encode([Bend("insert_unknown", index=1, value=200, critical=True, data=b"x")]))
    assert e.notify == "UNSUPPORTED_CRITICAL_PAYLOAD" and e.data == bytes([200])
    assert e.payload == "200" and e.field == "Critical"


@pytest.mark.rfc(7296, "2.5", "MUST")
def test_unknown_noncritical_payload_is_skipped_and_recorded():
    m = Message.decode(init_request().encode([Bend("insert_unknown", index=2, value=201, data=b"xyz")]), strict=True)
    assert isinstance(m.payloads[2], UnknownPayload) and m.payloads[2].body == b"xyz"
    assert [f.rule for f in m.findings] == ["unknown-payload-skipped"]


@pytest.mark.rfc(7296, "3.2", "MUST")
def test_reserved_bits_are_findings_or_errors_in_strict_mode():
    d = init_request().encode([Bend("payload_reserved", index=1, value=0x11)])
    m = Message.decode(d)
    assert [(f.rule, f.payload, f.offset) for f in m.findings] == [("reserved-nonzero", "KE", m.payloads[1].offset + 1)]
    assert _err(d, strict=True).field == "RESERVED"
    m = Message.decode(init_request().encode([Bend("header_flags", value=0x01)]))
    assert [f.field for f in m.findings] == ["Flags"]


@pytest.mark.parametrize("bend,field", [
    (Bend("payload_length", index=0, delta=1), "Payload Length"),
    (Bend("payload_length", index=-1, delta=1), "Payload Length"),
    (Bend("payload_length", index=0, value=3), "Payload Length"),
    (Bend("payload_length", index=1, value=6), "Payload Length"),  # KE needs 8
    (Bend("next_payload", index=-1, value=41), "generic payload header"),
    (Bend("header_length", delta=4), "Length"),
    (Bend("truncate", value=3), "Length"),
], ids=lambda v: v.op + str(v.index) if isinstance(v, Bend) else v)
def test_bent_lengths_are_caught(bend, field):
    assert _err(init_request().encode([bend])).field == field


@pytest.mark.rfc(7296, "2.6", "MUST")
def test_cookie_must_be_first():
    m = init_request(Notify("COOKIE", bytes(16)))
    assert Message.decode(m.encode()).findings[0].rule == "cookie-not-first"
    assert _err(m.encode(), strict=True).payload == "N(COOKIE)"
    first = Message(m.header, [Notify("COOKIE", bytes(16))] + init_request().payloads)
    assert Message.decode(first.encode(), strict=True).findings == []


@pytest.mark.rfc(7296, "3.14", "MUST")
def test_sk_must_be_last():
    m = Message(Header(SPI_I, SPI_R, IKE_AUTH, 1), [SK(35, bytes(40))])
    assert Message.decode(m.encode()).payloads[0].first_payload == 35
    e = _err(m.encode([Bend("insert_unknown", index=1, value=201)]))
    assert e.payload == "SK" and "last" in e.reason


def test_sa_structure_errors():
    good = init_request().encode()
    # proposal Last Substruc 1, transform count wrong, transform Last Substruc wrong
    assert _err(init_request().encode([Bend("poke", index=0, offset=4, value=1)])).field == "Last Substruc"
    assert _err(init_request().encode([Bend("poke", index=0, offset=11, value=5)])).field == "Num Transforms"
    assert _err(init_request().encode([Bend("poke", index=0, offset=12, value=0)])).field == "Last Substruc"
    assert Message.decode(good).payloads[0].proposals[0].transforms[0].key_length == 256


def test_bends_from_data():
    b = Bend.from_dict({"op": "append", "data": "00ff"})
    assert init_request().encode([b])[-2:] == b"\x00\xff"
    with pytest.raises(ConfigError):
        Bend.from_dict({"op": "append", "colour": 1})
    with pytest.raises(ConfigError):
        Bend("no_such_op")


def test_list_bends():
    m = init_request()
    names = lambda d: [p.name for p in Message.decode(d).payloads]  # noqa: E731
    assert names(m.encode([Bend("strip", index=1)])) == ["SA", "Nonce", "N", "N"]
    assert names(m.encode([Bend("duplicate", index=0)]))[:2] == ["SA", "SA"]
    assert names(m.encode([Bend("swap", index=0, value=2)]))[:3] == ["Nonce", "KE", "SA"]
    assert names(m.encode([Bend("move", index=-1, value=0)]))[:2] == ["N", "SA"]
    d = m.encode([Bend("message_id", value=7)])
    assert Message.decode(d).header.message_id == 7


def test_skf_fields_checked():
    m = Message(Header(SPI_I, SPI_R, IKE_AUTH, 1), [SKF(35, 1, 2, bytes(30))])
    assert Message.decode(m.encode()).payloads[0].fragment_number == 1
    assert _err(Message(m.header, [SKF(0, 3, 2, bytes(30))]).encode()).field == "Fragment Number"
    assert _err(Message(m.header, [SKF(0, 0, 2, bytes(30))]).encode()).field == "Fragment Number"
    assert _err(Message(m.header, [SKF(0, 1, 0, bytes(30))]).encode()).field == "Total Fragments"


def test_payload_specific_errors():
    h = Header(SPI_I, SPI_R, IKE_AUTH, 1)
    assert _err(Message(h, [D(3, [b"\x01\x02\x03\x04"])]).encode([Bend("poke", offset=7, value=2)])).field == \
        "Num of SPIs"
    assert _err(Message(h, [Notify(7)]).encode([Bend("poke", offset=5, value=9)])).field == "SPI Size"
    assert _err(Message(h, [EAP(bytes([1, 1, 0, 5, 1]))]).encode([Bend("poke", offset=7, value=9)])).field == "Length"
    ts = TSi([Selector(ipaddress.ip_address("198.18.0.1"), ipaddress.ip_address("198.18.0.2"))])
    assert _err(Message(h, [ts]).encode([Bend("poke", offset=4, value=2)])).field == "Number of TSs"
    assert _err(Message(h, [ts]).encode([Bend("poke", offset=8, value=8)])).field == "Selector Length"
    short = Message.decode(Message(h, [Nonce(bytes(8))]).encode())
    assert short.findings[0].rule == "nonce-length"


@pytest.mark.rfc(7296, "3.5", "MUST")
def test_address_id_length_is_checked():
    h = Header(SPI_I, SPI_R, IKE_AUTH, 1)
    m = Message.decode(Message(h, [IDi(1, bytes(5))]).encode())
    assert [f.rule for f in m.findings] == ["id-length"]
    assert Message.decode(Message(h, [IDr(5, bytes(16))]).encode(), strict=True).findings == []


@pytest.mark.rfc(7296, "3.11", "MUST")
def test_delete_spi_size_per_protocol():
    h = Header(SPI_I, SPI_R, IKE_AUTH, 1)
    assert Message.decode(Message(h, [D(3, [bytes(4)]), D(1, [])]).encode(), strict=True).findings == []
    m = Message.decode(Message(h, [D(3, [bytes(8)])]).encode())
    assert [(f.rule, f.field) for f in m.findings] == [("delete-spi-size", "SPI Size")]


def test_describe_and_unknown_exchange():
    m = init_request()
    assert m.describe() == ("IKE_SA_INIT request 0 [ SA KE Nonce N(NAT_DETECTION_SOURCE_IP) "
                            "N(NAT_DETECTION_DESTINATION_IP) ]")
    odd = Message.decode(m.encode([Bend("exchange_type", value=99)]), strict=True)
    assert odd.describe().startswith("99 request 0") and [f.rule for f in odd.findings] == ["unknown-exchange-type"]


def test_unencodable_header_is_a_config_error():
    with pytest.raises(ConfigError, match="SPIs"):
        Message(Header(b"short", SPI_R, IKE_AUTH, 1)).encode()
    with pytest.raises(ConfigError, match="out of range"):
        Message(Header(SPI_I, SPI_R, IKE_AUTH, 2**32)).encode()


def test_decode_accepts_bytearray_and_keeps_bytes():
    d = init_request().encode()
    m = Message.decode(bytearray(d))
    assert m.raw == d and isinstance(m.raw, bytes) and m == init_request()
