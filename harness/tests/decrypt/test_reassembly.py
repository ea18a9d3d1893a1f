"""Outer IP fragment reassembly for captures."""
from __future__ import annotations

import struct

import pytest

from harness.errors import ParseError
from harness.esp.ip import addr_bytes, ipv4_header, ipv6_header
from harness.tools.reassembly import Reassembler

A4, B4 = addr_bytes("198.18.4.1"), addr_bytes("198.18.4.2")
A6, B6 = addr_bytes("2001:db8:4::1"), addr_bytes("2001:db8:4::2")
PAYLOAD = bytes(range(256)) * 4


def v4_frag(offset: int, data: bytes, more: bool, ident: int = 7) -> bytes:
    hdr = bytearray(ipv4_header(A4, B4, 50, len(data), ident=ident))
    struct.pack_into("!H", hdr, 6, (0x2000 if more else 0) | offset // 8)
    return bytes(hdr) + data


def v6_frag(offset: int, data: bytes, more: bool) -> bytes:
    fh = struct.pack("!BBHI", 50, 0, offset | (1 if more else 0), 0x1234)
    return ipv6_header(A6, B6, 44, 8 + len(data)) + fh + data


def test_ipv4_out_of_order_and_duplicate_fragments():
    r = Reassembler()
    parts = [v4_frag(0, PAYLOAD[:400], True), v4_frag(400, PAYLOAD[400:800], True), v4_frag(800, PAYLOAD[800:], False)]
    assert r.add(parts[2], "c") is None and r.add(parts[0], "a") is None and r.add(parts[0], "a2") is None
    whole = r.add(parts[1], "b")
    assert whole == ipv4_header(A4, B4, 50, len(PAYLOAD), ident=7) + PAYLOAD
    assert sorted(r.completed_tags) == ["a", "b", "c"] and r.pending == 0


def test_not_a_fragment_is_returned_as_is():
    pkt = ipv4_header(A4, B4, 50, 8) + bytes(8)
    assert Reassembler().add(pkt) is pkt


def test_ipv6_fragments():
    r = Reassembler()
    assert r.add(v6_frag(0, PAYLOAD[:512], True)) is None
    assert r.add(v6_frag(512, PAYLOAD[512:], False)) == ipv6_header(A6, B6, 50, len(PAYLOAD)) + PAYLOAD


def test_overlap_is_refused():
    r = Reassembler()
    r.add(v4_frag(0, PAYLOAD[:400], True))
    with pytest.raises(ParseError, match="overlap"):
        r.add(v4_frag(200, PAYLOAD[200:600], False))
