"""Capture file reading: pcap in both byte orders and resolutions, pcapng blocks, link types, malformed files."""
from __future__ import annotations

import struct

import pytest

from harness.errors import ParseError
from harness.tools.pcapio import (LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, LINKTYPE_NULL, LINKTYPE_RAW,
                                  CapturedPacket, ethernet_frame, ip_of, read_capture, write_pcap)

IP4 = bytes.fromhex("4500001c00000000400100000000000000000000") + bytes(8)


def _pcap(end: str, magic: int, linktype: int, records) -> bytes:
    out = struct.pack(end + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)
    for sec, frac, data in records:
        out += struct.pack(end + "IIII", sec, frac, len(data), len(data)) + data
    return out


@pytest.mark.parametrize("end,magic,scale", [("<", 0xA1B2C3D4, 1000), (">", 0xA1B2C3D4, 1000), ("<", 0xA1B23C4D, 1), (">", 0xA1B23C4D, 1)])
def test_pcap_byte_orders_and_resolutions(tmp_path, end, magic, scale):
    path = tmp_path / "a.pcap"
    path.write_bytes(_pcap(end, magic, LINKTYPE_RAW, [(10, 5, IP4), (11, 6, IP4[:20])]))
    pkts = read_capture(path)
    assert [(p.index, p.ts_ns, p.linktype, p.data) for p in pkts] == [(1, 10 * 10**9 + 5 * scale, LINKTYPE_RAW, IP4), (2, 11 * 10**9 + 6 * scale, LINKTYPE_RAW, IP4[:20])]


def _block(end: str, btype: int, body: bytes) -> bytes:
    body += bytes(-len(body) % 4)
    n = 12 + len(body)
    return struct.pack(end + "II", btype, n) + body + struct.pack(end + "I", n)


def _pcapng(end: str, frames, tsresol: int | None = None) -> bytes:
    shb = _block(end, 0x0A0D0D0A, struct.pack(end + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    opts = (struct.pack(end + "HH", 9, 1) + bytes([tsresol]) + bytes(3) + struct.pack(end + "HH", 0, 0)) if tsresol is not None else b""
    idb = _block(end, 1, struct.pack(end + "HHI", LINKTYPE_ETHERNET, 0, 65535) + opts)
    out = shb + idb
    for ts, data in frames:
        out += _block(end, 6, struct.pack(end + "IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data)) + data)
    out += _block(end, 3, struct.pack(end + "I", len(frames[0][1])) + frames[0][1])  # a Simple Packet Block
    out += _block(end, 5, b"\x00" * 8)  # an Interface Statistics Block: skipped
    return out


@pytest.mark.parametrize("end", ["<", ">"])
@pytest.mark.parametrize("tsresol,tick", [(None, 1000), (9, 1), (6, 1000)])
def test_pcapng(tmp_path, end, tsresol, tick):
    frame = ethernet_frame(IP4)
    path = tmp_path / "a.pcapng"
    path.write_bytes(_pcapng(end, [(123, frame), (124, frame[:-1])], tsresol))
    pkts = read_capture(path)
    assert [(p.ts_ns, p.data) for p in pkts] == [(123 * tick, frame), (124 * tick, frame[:-1]), (0, frame)]
    assert ip_of(pkts[0]) == (frame[:14], IP4)


@pytest.mark.parametrize("data,field", [
    (b"\x00\x01", "magic"),
    (b"\x01\x02\x03\x04" + bytes(30), "magic"),
    (struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + b"\x00" * 10, "record header"),
    (struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + struct.pack("<IIII", 0, 0, 100, 100) + b"x", "record data"),
    (struct.pack("<II", 0x0A0D0D0A, 28) + b"\x00" * 20, "byte-order magic"),
    (struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack("<I", 28) + struct.pack("<II", 6, 8), "block header"),
    (struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack("<I", 28) + struct.pack("<II", 6, 8) + bytes(8), "block total length"),
])
def test_malformed_files_name_field_and_offset(tmp_path, data, field):
    path = tmp_path / "bad"
    path.write_bytes(data)
    with pytest.raises(ParseError) as e:
        read_capture(path)
    assert e.value.field == field and str(path) in str(e.value)


def test_packet_block_before_interface_is_an_error(tmp_path):
    end = "<"
    shb = _block(end, 0x0A0D0D0A, struct.pack(end + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    path = tmp_path / "noidb.pcapng"
    path.write_bytes(shb + _block(end, 6, struct.pack(end + "IIIII", 0, 0, 0, 4, 4) + b"abcd"))
    with pytest.raises(ParseError, match="interface id"):
        read_capture(path)


@pytest.mark.parametrize("linktype,frame,expect", [
    (LINKTYPE_ETHERNET, b"\x00" * 12 + b"\x81\x00\x00\x05\x08\x00" + IP4, IP4),  # 802.1Q tag
    (LINKTYPE_ETHERNET, b"\x00" * 12 + b"\x08\x06" + bytes(28), None),  # ARP
    (LINKTYPE_LINUX_SLL, bytes(14) + b"\x08\x00" + IP4, IP4),
    (LINKTYPE_LINUX_SLL2, b"\x08\x00" + bytes(18) + IP4, IP4),
    (LINKTYPE_NULL, b"\x02\x00\x00\x00" + IP4, IP4),
    (LINKTYPE_RAW, IP4, IP4),
    (147, IP4, None),  # a user link type: not IP
])
def test_link_types(linktype, frame, expect):
    got = ip_of(CapturedPacket(1, 0, linktype, frame))
    assert (got[1] if got else None) == expect


def test_write_then_read(tmp_path):
    path = tmp_path / "w.pcap"
    assert write_pcap(path, [(5, IP4), (1_000_000_007, IP4)], LINKTYPE_RAW) == 2
    assert [(p.ts_ns, p.data, p.linktype) for p in read_capture(path)] == [(5, IP4, LINKTYPE_RAW), (1_000_000_007, IP4, LINKTYPE_RAW)]
