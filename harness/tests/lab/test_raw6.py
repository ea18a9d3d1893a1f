"""Unit tests of harness.lab.raw6.rebuild: an IPv6 packet put back together from what recvmsg reports."""
from __future__ import annotations

import socket
import struct

from harness.esp.headers import options_header
from harness.lab.raw6 import rebuild

SRC, DST = "2001:db8::3", "2001:db8::2"


def _anc(kind: int, value: bytes) -> tuple[int, int, bytes]:
    return socket.IPPROTO_IPV6, kind, value


def test_rebuild_puts_back_the_header_and_the_extension_headers_in_order() -> None:
    hbh, dst_opts, ah = options_header([(0x1E, b"ab")]), options_header([(0x3E, b"cdef")]), b"\x3a\x04" + bytes(22)
    anc = [_anc(socket.IPV6_PKTINFO, socket.inet_pton(socket.AF_INET6, DST) + struct.pack("=I", 3)),
           _anc(socket.IPV6_HOPLIMIT, struct.pack("=i", 61)), _anc(socket.IPV6_TCLASS, struct.pack("=i", 0xB8)),
           _anc(socket.IPV6_HOPOPTS, hbh), _anc(socket.IPV6_DSTOPTS, dst_opts)]
    p = rebuild(ah, anc, SRC + "%eth0", 51)
    assert p[:4] == bytes.fromhex("6b800000") and p[4:6] == (len(hbh) + len(dst_opts) + len(ah)).to_bytes(2, "big")
    assert (p[6], p[7]) == (0, 61) and p[8:24] == socket.inet_pton(socket.AF_INET6, SRC)
    assert p[24:40] == socket.inet_pton(socket.AF_INET6, DST)
    assert p[40] == 60 and p[40 + len(hbh)] == 51 and p[-len(ah):] == ah
    assert p[41:40 + len(hbh)] == hbh[1:]


def test_rebuild_without_extension_headers() -> None:
    anc = [_anc(socket.IPV6_PKTINFO, socket.inet_pton(socket.AF_INET6, DST) + bytes(4)), (socket.SOL_SOCKET, 1, b"")]
    p = rebuild(b"\x00" * 24, anc, SRC, 50)
    assert p[6] == 50 and p[4:6] == b"\x00\x18" and len(p) == 64
