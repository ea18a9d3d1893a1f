"""IP fragmentation by the built-in end (harness.esp.fragment), checked by the capture reassembler."""
from __future__ import annotations

import struct

import pytest

from harness.errors import ConfigError
from harness.esp.fragment import fragment
from harness.esp.headers import options_header, with_extensions
from harness.esp.ip import addr_bytes, ipv4_header, ipv6_header
from harness.tools.reassembly import Reassembler

A4, B4 = addr_bytes("198.18.4.1"), addr_bytes("198.18.4.2")
A6, B6 = addr_bytes("2001:db8:4::1"), addr_bytes("2001:db8:4::2")
DATA = bytes(range(256)) * 12


def _whole(parts: list[bytes]) -> bytes | None:
    r = Reassembler()
    got = None
    for p in reversed(parts):  # out of order on purpose
        got = r.add(p)
    return got


@pytest.mark.parametrize("mtu", [1500, 576, 68])
def test_ipv4_fragments_fit_and_reassemble(mtu):
    packet = ipv4_header(A4, B4, 50, len(DATA), ident=9) + DATA
    parts = fragment(packet, mtu, 0x1234)
    assert len(parts) > 1 and all(len(p) <= mtu for p in parts)
    flags = [struct.unpack_from("!H", p, 6)[0] for p in parts]
    assert all(f & 0x2000 for f in flags[:-1]) and not flags[-1] & 0x2000
    assert all((len(p) - 20) % 8 == 0 for p in parts[:-1])
    assert {p[4:6] for p in parts} == {b"\x12\x34"}
    whole = _whole(parts)
    assert whole is not None and whole[20:] == DATA and whole[12:20] == packet[12:20] and whole[9] == 50


def test_ipv6_fragment_header_after_hop_by_hop():
    packet = with_extensions(ipv6_header(A6, B6, 50, len(DATA)) + DATA, [(0, options_header([(0x05, b"\0\0")]))])
    parts = fragment(packet, 1280, 0xA0B0C0D0)
    assert len(parts) == 3 and all(len(p) <= 1280 for p in parts)
    for p in parts:
        assert p[40] == 44  # Hop-by-Hop's Next Header: Fragment
        assert p[48] == 50 and p[52:56] == b"\xa0\xb0\xc0\xd0"  # the Fragment header names ESP and the ident
    assert [struct.unpack_from("!H", p, 50)[0] & 1 for p in parts] == [1, 1, 0]
    whole = _whole(parts)
    assert whole is not None and whole[48:] == DATA and whole[40] == 50


def test_a_packet_that_fits_is_sent_whole():
    packet = ipv6_header(A6, B6, 50, 100) + bytes(100)
    assert fragment(packet, 1500, 1) == [packet]


def test_dont_fragment_and_tiny_mtu_are_refused():
    df = bytearray(ipv4_header(A4, B4, 50, len(DATA), df=True) + DATA)
    with pytest.raises(ConfigError, match="Don't Fragment"):
        fragment(bytes(df), 1500, 1)
    with pytest.raises(ConfigError, match="cannot carry"):
        fragment(ipv6_header(A6, B6, 50, len(DATA)) + DATA, 50, 1)
