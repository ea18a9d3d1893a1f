"""Capture files: read pcap and pcapng (as tcpdump, dumpcap and tshark write them), write pcap.

``read_capture(path)`` returns every packet as a ``CapturedPacket`` (index, timestamp in
nanoseconds, link type, bytes); ``ip_of(packet)`` strips the link layer (Ethernet with
802.1Q tags, Linux cooked v1/v2, raw IP, BSD loopback). Malformed files raise ParseError
naming the file, the field and its byte offset.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from harness.errors import ParseError

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

_PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1": ("<", 1000), b"\xa1\xb2\xc3\xd4": (">", 1000),
                b"\x4d\x3c\xb2\xa1": ("<", 1), b"\xa1\xb2\x3c\x4d": (">", 1)}
_PCAPNG_SHB = 0x0A0D0D0A


@dataclass(frozen=True)
class CapturedPacket:
    """One packet of a capture file: index counts from 1 (Wireshark's frame number)."""

    index: int
    ts_ns: int
    linktype: int
    data: bytes


def read_capture(path: str | Path) -> list[CapturedPacket]:
    """Every packet of a pcap or pcapng file."""
    p = Path(path)
    data = p.read_bytes()
    if len(data) < 4:
        raise ParseError(str(p), "magic", 0, f"file is {len(data)} bytes, not a capture")
    if data[:4] in _PCAP_MAGICS:
        return _read_pcap(str(p), data)
    if struct.unpack_from("<I", data)[0] == _PCAPNG_SHB:
        return _read_pcapng(str(p), data)
    raise ParseError(str(p), "magic", 0, f"0x{data[:4].hex()} is neither pcap nor pcapng")


def _read_pcap(name: str, data: bytes) -> list[CapturedPacket]:
    end, scale = _PCAP_MAGICS[data[:4]]
    if len(data) < 24:
        raise ParseError(name, "pcap header", 0, f"truncated at {len(data)} of 24 bytes")
    linktype = struct.unpack_from(end + "I", data, 20)[0] & 0x0FFFFFFF
    out, off = [], 24
    while off < len(data):
        if off + 16 > len(data):
            raise ParseError(name, "record header", off, f"truncated: {len(data) - off} of 16 bytes")
        sec, frac, incl, _orig = struct.unpack_from(end + "IIII", data, off)
        if off + 16 + incl > len(data):
            raise ParseError(name, "record data", off + 16, f"caplen {incl} runs past the end of the file")
        out.append(CapturedPacket(len(out) + 1, sec * 1_000_000_000 + frac * scale, linktype, data[off + 16: off + 16 + incl]))
        off += 16 + incl
    return out


def _read_pcapng(name: str, data: bytes) -> list[CapturedPacket]:
    out: list[CapturedPacket] = []
    end = "<"
    interfaces: list[tuple[int, int]] = []  # (linktype, ns per tick)
    off = 0
    while off < len(data):
        if off + 12 > len(data):
            raise ParseError(name, "block header", off, f"truncated: {len(data) - off} of 12 bytes")
        btype = struct.unpack_from(end + "I", data, off)[0]
        if btype == _PCAPNG_SHB:
            bom = data[off + 8: off + 12]
            end = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}.get(bom, "")
            if not end:
                raise ParseError(name, "byte-order magic", off + 8, f"0x{bom.hex()} is not 0x1a2b3c4d in either order")
            interfaces = []  # a new section starts its own interface list
        blen = struct.unpack_from(end + "I", data, off + 4)[0]
        if blen < 12 or blen % 4 or off + blen > len(data):
            raise ParseError(name, "block total length", off + 4, f"{blen} is invalid at this point of a {len(data)}-byte file")
        body = data[off + 8: off + blen - 4]
        if btype == 1:  # Interface Description Block
            linktype = struct.unpack_from(end + "H", body, 0)[0]
            interfaces.append((linktype, _if_tsresol(name, body[8:], end, off + 16)))
        elif btype in (6, 2):  # Enhanced Packet Block, obsolete Packet Block
            if len(body) < 20:
                raise ParseError(name, "packet block", off, f"body is {len(body)} bytes, less than 20")
            if btype == 6:
                ifid, hi, lo, incl, _orig = struct.unpack_from(end + "IIIII", body, 0)
            else:
                ifid, _drops, hi, lo, incl, _orig = struct.unpack_from(end + "HHIIII", body, 0)
            if ifid >= len(interfaces):
                raise ParseError(name, "interface id", off + 8, f"{ifid} but only {len(interfaces)} interfaces described")
            if 20 + incl > len(body):
                raise ParseError(name, "captured length", off + 20, f"{incl} runs past the block")
            linktype, tick = interfaces[ifid]
            out.append(CapturedPacket(len(out) + 1, ((hi << 32) | lo) * tick, linktype, body[20: 20 + incl]))
        elif btype == 3:  # Simple Packet Block: interface 0, no timestamp
            if not interfaces:
                raise ParseError(name, "simple packet block", off, "no interface described before it")
            orig = struct.unpack_from(end + "I", body, 0)[0]
            out.append(CapturedPacket(len(out) + 1, 0, interfaces[0][0], body[4: 4 + min(orig, len(body) - 4)]))
        off += blen
    return out


def _if_tsresol(name: str, options: bytes, end: str, base: int) -> int:
    """Nanoseconds per timestamp tick from an IDB's if_tsresol option (default microseconds)."""
    off = 0
    while off + 4 <= len(options):
        code, length = struct.unpack_from(end + "HH", options, off)
        if code == 0:
            break
        if code == 9 and length >= 1:
            v = options[off + 4]
            if v & 0x80:
                raise ParseError(name, "if_tsresol", base + off + 4, "power-of-two resolutions are not supported")
            return max(1, 10 ** 9 // 10 ** v) if v <= 9 else 1
        off += 4 + length + (-length % 4)
    return 1000


def ip_of(pkt: CapturedPacket) -> tuple[bytes, bytes] | None:
    """(link-layer header, IP packet) of a captured packet, or None when it carries no IPv4/IPv6."""
    d, lt = pkt.data, pkt.linktype
    if lt == LINKTYPE_ETHERNET:
        off, etype = 12, None
        while off + 2 <= len(d):
            etype = int.from_bytes(d[off: off + 2], "big")
            if etype in (0x8100, 0x88A8):  # 802.1Q / 802.1ad tags
                off += 4
                continue
            off += 2
            break
        return (d[:off], d[off:]) if etype in (0x0800, 0x86DD) else None
    if lt == LINKTYPE_LINUX_SLL:
        return (d[:16], d[16:]) if len(d) >= 16 and d[14:16] in (b"\x08\x00", b"\x86\xdd") else None
    if lt == LINKTYPE_LINUX_SLL2:
        return (d[:20], d[20:]) if len(d) >= 20 and d[0:2] in (b"\x08\x00", b"\x86\xdd") else None
    if lt in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6):
        return (b"", d) if d and d[0] >> 4 in (4, 6) else None
    if lt == LINKTYPE_NULL:
        return (d[:4], d[4:]) if len(d) > 4 and d[4] >> 4 in (4, 6) else None
    return None


def ethernet_frame(ip: bytes, src_mac: bytes = bytes(6), dst_mac: bytes = bytes(6)) -> bytes:
    """An Ethernet II frame around an IP packet."""
    return dst_mac + src_mac + (b"\x86\xdd" if ip[:1] and ip[0] >> 4 == 6 else b"\x08\x00") + ip


def write_pcap(path: str | Path, packets: Iterable[tuple[int, bytes]], linktype: int = LINKTYPE_RAW, snaplen: int = 262144) -> int:
    """Write (timestamp ns, bytes) records as a nanosecond pcap; returns how many were written."""
    n = 0
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, snaplen, linktype))
        for ts, frame in packets:
            sec, ns = divmod(ts, 1_000_000_000)
            f.write(struct.pack("<IIII", sec, ns, len(frame), len(frame)) + frame)
            n += 1
    return n
