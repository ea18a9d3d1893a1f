"""Finding ESP/AH in IP packets: UDP encapsulation, non-ESP marker, keepalives, IPv6 extension headers, fragments."""
from __future__ import annotations

import struct

import pytest

from harness.errors import ParseError
from harness.tools.ipsec_locate import locate

A4, B4 = bytes([198, 18, 0, 1]), bytes([198, 18, 0, 2])
A6, B6 = bytes.fromhex("20010db8000000000000000000000001"), bytes.fromhex("20010db8000000000000000000000002")
ESP = struct.pack("!II", 0x1234, 7) + bytes(24)


def v4(proto: int, payload: bytes, frag: int = 0) -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, frag, 64, proto, 0, A4, B4) + payload


def v6(nh: int, payload: bytes) -> bytes:
    return struct.pack("!IHBB16s16s", 0x60000000, len(payload), nh, 64, A6, B6) + payload


def udp(sport: int, dport: int, body: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(body), 0) + body


def test_raw_esp_v4_and_link_padding():
    loc = locate(v4(50, ESP) + b"\x00" * 6)  # Ethernet minimum-frame padding after the IP packet
    assert (loc.protocol, loc.spi, loc.seq, loc.offset, loc.udp_encap, loc.src, loc.dst) == ("esp", 0x1234, 7, 20, False, "198.18.0.1", "198.18.0.2")
    assert len(loc.ip) == 20 + len(ESP)


def test_udp_encapsulated_esp_and_what_is_not():
    assert locate(v4(17, udp(4500, 4500, ESP))).udp_encap
    assert locate(v4(17, udp(4500, 4500, b"\x00\x00\x00\x00" + bytes(40)))) is None  # non-ESP marker: IKE
    assert locate(v4(17, udp(4500, 4500, b"\xff"))) is None  # NAT-keepalive
    assert locate(v4(17, udp(500, 500, ESP))) is None
    assert locate(v4(17, udp(33000, 4500, ESP))).spi == 0x1234


def test_ah_v6_behind_extension_headers():
    ah = bytes([58, 4, 0, 0]) + struct.pack("!II", 0xABCD, 3) + bytes(12)
    dest_opts = bytes([51, 0]) + bytes(6)
    loc = locate(v6(60, dest_opts + ah))
    assert (loc.protocol, loc.spi, loc.seq, loc.offset, loc.header_offset, loc.dst) == ("ah", 0xABCD, 3, 48, 40, "2001:db8::2")


def test_fragments_are_not_opened():
    assert locate(v4(50, ESP, frag=0x2000)) is None
    assert locate(v6(44, bytes([50, 0, 0, 1]) + bytes(4) + ESP)) is None


@pytest.mark.parametrize("packet,field", [
    (b"", "version"),
    (b"\x45" + bytes(10), "length"),
    (v4(50, ESP)[:30], "total length"),
    (bytes([0x75]) + bytes(40), "version"),
    (v4(50, b"\x00\x00"), "SPI"),
    (v4(17, b"\x11\x94"), "length"),
    (v6(50, ESP)[:50], "payload length"),
])
def test_malformed(packet, field):
    with pytest.raises(ParseError) as e:
        locate(packet)
    assert e.value.field == field
