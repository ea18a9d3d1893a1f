"""IP fragment reassembly for captures (RFC 791 s3.2 for IPv4, RFC 8200 s4.5 for IPv6), so that ESP/AH
packets the sender fragmented after IPsec processing (RFC 4301 s8.1) can be opened.

``Reassembler.add(ip, tag) -> bytes | None``: returns the whole packet once its last missing
fragment arrives (``completed_tags`` then lists the tags of its fragments), None while it
waits, and the packet itself when it is no fragment.
Overlapping fragments are refused (RFC 5722) with a ParseError.
"""
from __future__ import annotations

import struct

from harness.errors import ParseError

_V6_EXT = {0, 43, 60}


class Reassembler:
    """Buffers fragments per (version, src, dst, id, protocol) until the datagram is whole."""

    def __init__(self) -> None:
        self._parts: dict[tuple, dict] = {}
        self.completed_tags: list[object] = []

    def add(self, ip: bytes, tag: object = None) -> bytes | None:
        """The complete packet this fragment finishes, None if still incomplete, ip itself if not a fragment."""
        frag = _fragment(ip)
        if frag is None:
            return ip
        key, header, offset, more, data = frag
        st = self._parts.setdefault(key, {"header": None, "pieces": {}, "total": None, "tags": []})
        for start, piece in st["pieces"].items():
            if start < offset + len(data) and offset < start + len(piece):
                if start == offset and piece == data:
                    return None  # a duplicate fragment
                raise ParseError("IP fragment", "fragment offset", 6 if ip[0] >> 4 == 4 else 0,
                                 f"bytes {offset}..{offset + len(data)} overlap an earlier fragment (RFC 5722)")
        st["pieces"][offset] = data
        st["tags"].append(tag)
        if offset == 0:
            st["header"] = header
        if not more:
            st["total"] = offset + len(data)
        if st["header"] is None or st["total"] is None or sum(len(p) for p in st["pieces"].values()) != st["total"]:
            return None
        del self._parts[key]
        self.completed_tags = st["tags"]
        payload = b"".join(st["pieces"][k] for k in sorted(st["pieces"]))
        return _rebuild(st["header"], payload)

    @property
    def pending(self) -> int:
        """Datagrams still waiting for fragments."""
        return len(self._parts)


def _fragment(ip: bytes):
    if not ip:
        return None
    if ip[0] >> 4 == 4 and len(ip) >= 20:
        ihl = (ip[0] & 15) * 4
        total = struct.unpack_from("!H", ip, 2)[0]
        flags = struct.unpack_from("!H", ip, 6)[0]
        if not flags & 0x3FFF:
            return None
        if total > len(ip) or total < ihl:
            raise ParseError("IPv4 fragment", "total length", 2, f"{total} in a {len(ip)}-byte packet")
        key = (4, ip[12:20], ip[4:6], ip[9])
        return key, ip[:ihl], (flags & 0x1FFF) * 8, bool(flags & 0x2000), ip[ihl:total]
    if ip[0] >> 4 == 6 and len(ip) >= 40:
        nh, off, nh_pos = ip[6], 40, 6
        while nh in _V6_EXT and off + 2 <= len(ip):
            nh_pos, nh, off = off, ip[off], off + (ip[off + 1] + 1) * 8
        if nh != 44:
            return None
        if off + 8 > len(ip):
            raise ParseError("IPv6 fragment header", "length", off, "truncated")
        next_nh, fo, ident = ip[off], struct.unpack_from("!H", ip, off + 2)[0], ip[off + 4: off + 8]
        header = bytearray(ip[:off])
        header[nh_pos] = next_nh
        end = 40 + struct.unpack_from("!H", ip, 4)[0]
        return (6, ip[8:40], ident, next_nh), bytes(header), fo & 0xFFF8, bool(fo & 1), ip[off + 8: end]
    return None


def _rebuild(header: bytes, payload: bytes) -> bytes:
    h = bytearray(header)
    if h[0] >> 4 == 4:
        struct.pack_into("!HH", h, 2, len(h) + len(payload), struct.unpack_from("!H", h, 4)[0])
        struct.pack_into("!H", h, 6, 0)
        struct.pack_into("!H", h, 10, 0)
        s = sum(struct.unpack(f"!{len(h) // 2}H", bytes(h)))
        while s >> 16:
            s = (s & 0xFFFF) + (s >> 16)
        struct.pack_into("!H", h, 10, ~s & 0xFFFF)
    else:
        struct.pack_into("!H", h, 4, len(h) - 40 + len(payload))
    return bytes(h) + payload
