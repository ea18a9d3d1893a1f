"""Unit tests of harness.esp.headers (header edits a router or attacker makes) and of AH against them: mutable
fields changed after the ICV was computed still verify, immutable ones do not (RFC 4302 s3.3.3.1)."""
from __future__ import annotations

import os

import pytest

from harness.errors import ConfigError, PacketDropped, ParseError
from harness.esp import Faults, Receiver, SecurityAssociation, Sender
from harness.esp.headers import (MUTABLE_OPTION, ah_with_reserved, ipv4_with, ipv4_with_options, ipv6_with,
                                 option_data_at, options_header, with_extensions)
from harness.esp.ip import DEST_OPTS, HOP_BY_HOP, checksum, parse_ip
from harness.lab.ping import echo6_packet, echo_packet, parse_echo

V4 = ("198.18.1.1", "198.18.2.2")
V6 = ("2001:db8::1", "2001:db8::2")
EXP = 0x1E
RA = bytes((0x94, 4, 0, 0))  # Router Alert (RFC 2113): immutable (RFC 4302 Appendix A.1)
RR = bytes((7, 7, 4)) + bytes(4)  # Record Route with one empty slot: mutable


def _ah(v: int) -> SecurityAssociation:
    src, dst = V4 if v == 4 else V6
    return SecurityAssociation("ah", 0x4000, src, dst, "transport", integrity="AUTH_HMAC_SHA2_256_128",
                               integrity_key=os.urandom(32))


def test_ipv4_with_changes_fields_and_keeps_the_checksum_right() -> None:
    p = echo_packet(*V4, 1, 2)
    q = ipv4_with(p, tos=0xBA, ttl=3, ident=0x1234, df=False, src="198.18.9.9")
    assert (q[1], q[8], q[4:6], q[6] & 0x40, q[12:16]) == (0xBA, 3, b"\x12\x34", 0, bytes([198, 18, 9, 9]))
    assert checksum(q[:20]) == 0 and q[20:] == p[20:]
    assert ipv4_with(q, df=True)[6] & 0x40
    with pytest.raises(ParseError):
        ipv4_with(echo6_packet(*V6, 1, 2), ttl=1)


def test_ipv6_with_changes_fields() -> None:
    p = echo6_packet(*V6, 1, 2)
    q = ipv6_with(p, tclass=0xBA, flow=0x5A5A5, hop_limit=2, src="2001:db8::9")
    assert q[:4] == bytes.fromhex("6ba5a5a5") and q[7] == 2 and q[8:24] == bytes.fromhex("20010db8" + "00" * 11 + "09")
    assert q[24:] == p[24:]


def test_options_header_pads_to_8_octets_and_options_are_found() -> None:
    for n in range(0, 12):
        h = options_header([(EXP, b"\x01" * n)])
        assert len(h) % 8 == 0 and h[1] == len(h) // 8 - 1
    p = with_extensions(echo6_packet(*V6, 7, 8),
                        [(HOP_BY_HOP, options_header([(EXP, b"ab"), (EXP | MUTABLE_OPTION, b"cd")])),
                         (DEST_OPTS, options_header([(EXP, b"efgh")]))])
    assert p[6] == HOP_BY_HOP and p[40] == DEST_OPTS and p[40 + (p[41] + 1) * 8] == 58
    assert p[option_data_at(p, 0, EXP | MUTABLE_OPTION)] == b"cd" and p[option_data_at(p, 1, EXP)] == b"efgh"
    assert parse_echo(p)[2:5] == (8, 7, 8)
    with pytest.raises(ParseError):
        option_data_at(p, 1, 0x3E)


def test_echo6_packet_has_a_valid_icmpv6_checksum_and_parses() -> None:
    p = echo6_packet(*V6, 0x4950, 3, b"x" * 5, reply=True)
    body = p[40:]
    pseudo = p[8:40] + len(body).to_bytes(4, "big") + b"\x00\x00\x00\x3a"
    assert checksum(pseudo + body) == 0
    assert parse_echo(p) == (V6[0], V6[1], 0, 0x4950, 3, b"x" * 5)
    assert echo_packet(*V6, 1, 2) == echo6_packet(*V6, 1, 2)


@pytest.mark.rfc(4302, "3.3.3.1.1.1", "MUST")
def test_ah_ipv4_mutable_fields_changed_in_flight_verify_and_immutable_ones_do_not() -> None:
    sa = _ah(4)
    inner = ipv4_with(echo_packet(*V4, 1, 1), ident=0x77)
    sent = Sender(sa).protect(inner)
    for edit in ({"ttl": 1}, {"tos": 0xFF}, {"df": False}):
        assert Receiver(sa).unprotect(ipv4_with(sent, **edit)).inner[20:] == inner[20:]
    for edit in ({"ident": 0x78}, {"src": "198.18.1.9"}):
        with pytest.raises(PacketDropped) as e:
            Receiver(sa).unprotect(ipv4_with(sent, **edit))
        assert e.value.reason == "bad_icv"


@pytest.mark.rfc(4302, "3.3.3.1.2.2", "MUST")
def test_ah_ipv6_changeable_option_data_is_out_of_the_icv_and_the_rest_in() -> None:
    sa = _ah(6)
    ext = [(HOP_BY_HOP, options_header([(EXP, b"\x11" * 4), (EXP | MUTABLE_OPTION, b"\x22" * 4)])),
           (DEST_OPTS, options_header([(EXP, b"\x33" * 2), (EXP | MUTABLE_OPTION, b"\x44" * 2)]))]
    inner = with_extensions(echo6_packet(*V6, 1, 1), ext)
    sent = Sender(sa).protect(inner)
    view = parse_ip(sent)
    assert (sent[6], sent[40], view.proto, view.proto_pos) == (HOP_BY_HOP, DEST_OPTS, 51, 40 + 16)  # AH after both

    def flipped(header: int, option: int) -> bytes:
        out, at = bytearray(sent), option_data_at(sent, header, option)
        out[at] = bytes(b ^ 0xFF for b in sent[at])
        return bytes(out)

    for arrived in (ipv6_with(sent, tclass=0xBA, flow=0x12345, hop_limit=1), flipped(0, EXP | MUTABLE_OPTION),
                    flipped(1, EXP | MUTABLE_OPTION)):
        assert parse_echo(Receiver(sa).unprotect(arrived).inner)[3:5] == (1, 1)
    for arrived in (ipv6_with(sent, src="2001:db8::9"), flipped(0, EXP), flipped(1, EXP)):
        with pytest.raises(PacketDropped) as e:
            Receiver(sa).unprotect(arrived)
        assert e.value.reason == "bad_icv"


@pytest.mark.rfc(4302, "2.3", "SHOULD")
@pytest.mark.parametrize("v", [4, 6])
def test_ah_reserved_field_is_in_the_icv(v: int) -> None:
    sa = _ah(v)
    inner = echo_packet(*(V4 if v == 4 else V6), 1, 1)
    sent = Sender(sa).protect(inner)
    off = parse_ip(sent).offset
    again = ah_with_reserved(sa, sent, 0)
    assert again == sent  # the same ICV for the same Reserved field
    odd = ah_with_reserved(sa, sent, 0xA55A)
    assert odd[off + 2:off + 4] == b"\xa5\x5a" and odd[off + 12:off + 28] != sent[off + 12:off + 28]
    assert Receiver(sa).unprotect(odd).inner == inner  # the built-in receiver ignores it
    with pytest.raises(PacketDropped):  # but it is in the ICV: changed after the ICV, the packet fails
        Receiver(sa).unprotect(sent[:off + 2] + b"\xa5\x5a" + sent[off + 4:])
    with pytest.raises(ConfigError):
        esp = SecurityAssociation("esp", 1, *V4, encryption="ENCR_AES_GCM_16", encryption_key=bytes(20))
        ah_with_reserved(esp, sent, 1)


@pytest.mark.rfc(4302, "3.3.3.1.1.2", "MUST")
def test_ah_ipv4_options_router_alert_in_the_icv_record_route_out() -> None:
    sa = _ah(4)
    inner = ipv4_with_options(echo_packet(*V4, 1, 1), RA + RR)
    assert inner[0] == 0x48 and len(inner) == len(echo_packet(*V4, 1, 1)) + 12 and checksum(inner[:32]) == 0
    assert parse_echo(inner)[3:5] == (1, 1)
    sent = Sender(sa).protect(inner)
    recorded = bytearray(sent)
    recorded[26], recorded[27:31] = 8, bytes([198, 18, 0, 3])  # a router recorded its address
    assert Receiver(sa).unprotect(ipv4_with(bytes(recorded), ttl=1)).inner[20:32] == bytes(recorded[20:32])
    alert = bytearray(sent)
    alert[23] ^= 1
    with pytest.raises(PacketDropped):
        Receiver(sa).unprotect(ipv4_with(bytes(alert)))
    with pytest.raises(ParseError):
        ipv4_with_options(echo_packet(*V4, 1, 1), bytes(41))


@pytest.mark.parametrize("protocol", ["ah", "esp"])
def test_tunnel_outer_identification_is_never_0(protocol: str) -> None:
    """A tester kernel replaces Identification 0 of a packet without DF sent with IP_HDRINCL, which AH's ICV covers:
    the outer IPv4 header of sequence number 65536 (and every multiple) carries 1."""
    keys = {"integrity": "AUTH_HMAC_SHA2_256_128", "integrity_key": bytes(32)} if protocol == "ah" else \
        {"encryption": "ENCR_AES_GCM_16", "encryption_key": bytes(20)}
    sa = SecurityAssociation(protocol, 0x4001, *V4, "tunnel", **keys)
    inner = echo_packet(*V4, 1, 1)
    assert Sender(sa).protect(inner, Faults(seq=65536))[4:6] == b"\x00\x01"
    assert Sender(sa, seq=65536).protect(inner)[4:6] == b"\x00\x01"  # the fast path (ESP) too
