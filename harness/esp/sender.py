"""The outbound side of one SA: `Sender(sa).protect(inner_ip_packet) -> outer_ip_packet`.

Transport mode inserts ESP/AH after the IP header (IPv6: after hop-by-hop, routing,
fragment and destination options headers); tunnel mode wraps the whole inner packet in
a new outer header from sa.src to sa.dst (Next Header 4 or 41). UDP-encapsulated SAs put
a UDP header (RFC 3948) in front of ESP. `faults=Faults(...)` deviates for one packet;
`dummy()` sends a dummy packet (Next Header 59, RFC 4303 s2.6); `replay(back)` returns an
earlier packet byte for byte.
"""
from __future__ import annotations

import os
import struct
from collections import deque
from typing import Callable

from harness.errors import ParseError, SequenceNumberOverflow
from harness.esp.ah import AhCodec
from harness.esp.esp import EspCodec
from harness.esp.faults import NO_FAULTS, Faults
from harness.esp.fastpath import sender_fast
from harness.esp.ip import (IPPROTO_AH, IPPROTO_ESP, IPPROTO_IPIP, IPPROTO_IPV6, IPPROTO_NONE, IPPROTO_UDP, IpView,
                            addr_bytes, ipv4_header, ipv6_header, parse_ip, with_payload)
from harness.esp.sa import SecurityAssociation
from harness.esp.udpencap import udp_header

M32 = 0xFFFFFFFF
_W10 = struct.Struct("!10H")
_OUTER_V4 = struct.Struct("!BBHHHBBH4s4s").pack


class Sender:
    """Outbound processing for one SA: sequence counter, IVs from `random`, the last `history` packets kept."""

    def __init__(self, sa: SecurityAssociation, seq: int = 1, random: Callable[[int], bytes] = os.urandom,
                 history: int = 16) -> None:
        self.sa = sa
        self.next_seq = seq
        self._limit = (1 << 64) - 1 if sa.esn else M32
        self._src, self._dst = addr_bytes(sa.src), addr_bytes(sa.dst)
        self._v4 = len(self._src) == 4
        self._tunnel = sa.mode == "tunnel"
        self._udp = sa.udp_encap
        self._esp = EspCodec(sa, random) if sa.protocol == "esp" else None
        self._ah = AhCodec(sa, random) if sa.protocol == "ah" else None
        self.sent: deque[bytes] = deque(maxlen=history)
        self._random = random
        # the fault-free ESP path without UDP encapsulation skips the general framing code
        self._seal_fast = self._esp.seal_fast if self._esp is not None and self._udp is None else None
        if self._v4:  # the constant part of the outer IPv4 header checksum: version/IHL, TTL, addresses
            w = _W10.unpack(ipv4_header(self._src, self._dst, 0, 0, ttl=64))
            self._v4_sum = w[0] + w[4] + sum(w[6:])
        fast = sender_fast(self, self._protect)
        if fast is not None:
            self.protect = fast  # type: ignore[method-assign]  # same signature and results, fewer steps

    def _seq(self, faults: Faults) -> int:
        if faults.seq is not None:
            return faults.seq
        seq = self.next_seq
        if seq > self._limit:
            raise SequenceNumberOverflow(f"SA {self.sa.spi:#010x}: sequence number {seq} would cycle (RFC 4303 s3.3.3): rekey")
        self.next_seq = seq + 1
        return seq

    def protect(self, inner: bytes, faults: Faults | None = None) -> bytes:
        """The outer IP packet carrying inner (a complete IP packet) through this SA."""
        return self._protect(inner, faults)

    def _protect(self, inner: bytes, faults: Faults | None = None) -> bytes:
        if type(inner) is not bytes:
            inner = bytes(inner)
        seal_fast = self._seal_fast
        if faults is None and seal_fast is not None and self.next_seq <= self._limit:
            n = len(inner)
            if self._tunnel and n:
                v = inner[0] >> 4
                if v == 4 and n >= 20 or v == 6 and n >= 40:
                    seq = self.next_seq
                    self.next_seq = seq + 1
                    esp = seal_fast(seq, inner, 4 if v == 4 else 41)
                    pkt = self._outer(IPPROTO_ESP, esp, seq, inner[1] if v == 4 else (inner[0] << 4 | inner[1] >> 4) & 0xFF)
                    self.sent.append(pkt)
                    return pkt
            elif n >= 20 and inner[0] == 0x45:
                w0, w1, w2, w3, w4, _, w6, w7, w8, w9 = _W10.unpack_from(inner)
                if 20 <= w1 <= n and not w3 & 0x3FFF:
                    seq = self.next_seq
                    self.next_seq = seq + 1
                    esp = seal_fast(seq, inner[20:w1], w4 & 0xFF)
                    total = 20 + len(esp)
                    w4 = (w4 & 0xFF00) | IPPROTO_ESP
                    c = w0 + total + w2 + w3 + w4 + w6 + w7 + w8 + w9
                    c = (c & 0xFFFF) + (c >> 16)
                    c = (c & 0xFFFF) + (c >> 16)
                    pkt = _W10.pack(w0, total, w2, w3, w4, ~c & 0xFFFF, w6, w7, w8, w9) + esp
                    self.sent.append(pkt)
                    return pkt
        f = NO_FAULTS if faults is None else faults
        if self._tunnel:
            if not inner:
                raise ParseError("inner packet", "version", 0, "empty packet")
            v = inner[0] >> 4
            if v not in (4, 6):
                raise ParseError("inner packet", "version", 0, f"IP version {v}")
            if len(inner) < (20 if v == 4 else 40):  # only the header's presence is checked: a tester may send odd inner packets
                raise ParseError("inner packet", f"IPv{v} header", 0, f"{len(inner)} bytes, need {20 if v == 4 else 40}")
            tos = inner[1] if v == 4 else (int.from_bytes(inner[:2], "big") >> 4) & 0xFF
            return self._send(None, b"", inner, IPPROTO_IPIP if v == 4 else IPPROTO_IPV6, f, tos)
        view = parse_ip(inner, "inner packet")
        return self._send(view, inner, inner[view.offset:view.length], view.proto, f, 0)

    def dummy(self, length: int = 0, faults: Faults | None = None) -> bytes:
        """A dummy packet (Next Header 59, RFC 4303 s2.6) from sa.src to sa.dst with `length` random bytes; ESP only."""
        if self._esp is None:
            raise ParseError("dummy packet", "protocol", 0, "dummy packets are ESP only (RFC 4303 s2.6)")
        return self._send(None, b"", os.urandom(length), IPPROTO_NONE, NO_FAULTS if faults is None else faults, 0)

    def replay(self, back: int = 1) -> bytes:
        """The packet sent `back` packets ago (1 = the last), unchanged: a replay."""
        return self.sent[-back]

    def _send(self, view: IpView | None, orig: bytes, payload: bytes, nh: int, f: Faults, tos: int) -> bytes:
        """view None: a new outer header from sa.src to sa.dst; else orig's own header(s) (transport mode)."""
        seq = self._seq(f)
        if f.next_header is not None:
            nh = f.next_header
        if self._esp is not None:
            esp = self._esp.seal(seq, payload, nh, f.iv, f.padding, f.pad_length, f.tfc_length or 0, f.spi, f.seq_hi,
                                 f.corrupt_icv, f.corrupt_ciphertext)
            if f.truncate:
                esp = esp[: max(0, len(esp) - f.truncate)]
            proto = IPPROTO_ESP
            if self._udp is not None:
                src, dst = (self._src, self._dst) if view is None else (view.src, view.dst)
                esp = udp_header(src, dst, self._udp[0], self._udp[1], esp) + esp
                proto = IPPROTO_UDP
            pkt = self._outer(proto, esp, seq, tos) if view is None else with_payload(view, orig, proto, esp)
        else:
            assert self._ah is not None
            if view is None:
                header, pos = self._outer(IPPROTO_AH, b"", seq, tos), 9 if self._v4 else 6
            else:
                header, pos = orig[:view.offset], view.proto_pos
            pkt = self._ah.seal(header, pos, payload, nh, seq, f)
            if f.truncate:
                pkt = _truncate_ip(pkt, f.truncate)
        self.sent.append(pkt)
        return pkt

    def _outer(self, proto: int, payload: bytes, seq: int, tos: int) -> bytes:
        if self._v4:
            # Identification never 0: the tester's kernel gives a packet without DF and with 0 one of its own
            # (IP_HDRINCL), after AH's ICV covered it
            total, ident = 20 + len(payload), seq & 0xFFFF or 1
            c = self._v4_sum + tos + proto + total + ident
            c = (c & 0xFFFF) + (c >> 16)
            c = (c & 0xFFFF) + (c >> 16)
            return _OUTER_V4(0x45, tos, total, ident, 0, 64, proto, ~c & 0xFFFF, self._src, self._dst) + payload
        return ipv6_header(self._src, self._dst, proto, len(payload), tclass=tos) + payload


def _truncate_ip(pkt: bytes, n: int) -> bytes:
    """pkt without its last n bytes, its length fields fixed (so the IP layer still takes it)."""
    view = parse_ip(pkt, "outer packet", frozenset())
    return with_payload(view, pkt, pkt[view.proto_pos], pkt[view.offset:max(view.offset, len(pkt) - n)])
