"""The inbound side of one SA: `Receiver(sa, window=64).unprotect(outer_ip_packet) -> Unprotected`.

Order of checks (RFC 4303 s3.4, RFC 4302 s3.4): IP/UDP/ESP or AH framing, SPI, the
replay window (before the ICV, to discard cheaply), the ICV, padding and the inner packet;
only then is the window updated (s3.4.3). Every drop raises PacketDropped (MalformedPacket
for structure, a ParseError too) and adds one to `counters[reason]`; the input is never
modified. Tunnel mode strips TFC padding by the inner IP length; transport mode by the UDP
length when the payload is UDP (RFC 4303 s2.7).
"""
from __future__ import annotations

import struct
from typing import NamedTuple

from harness.errors import MalformedPacket, PacketDropped, ParseError
from harness.esp.ah import AhCodec
from harness.esp.esp import EspCodec
from harness.esp.fastpath import receiver_fast
from harness.esp.ip import IPPROTO_AH, IPPROTO_ESP, IPPROTO_IPIP, IPPROTO_IPV6, IPPROTO_NONE, IPPROTO_UDP, IpView, parse_ip, with_payload
from harness.esp.replay import ReplayWindow
from harness.esp.sa import SecurityAssociation
from harness.esp.natt_checksum import fix_transport_checksum
from harness.esp.udpencap import NON_ESP_MARKER

DROP_REASONS = ("bad_icv", "replayed", "too_old", "unknown_spi", "bad_padding", "malformed")
_unpack_II = struct.Struct("!II").unpack_from
_W10 = struct.Struct("!10H")
_NO_EXT: frozenset[int] = frozenset()


class Unprotected(NamedTuple):
    """An accepted packet: the inner IP packet (b"" for a dummy), its Next Header, full seq, SPI and padding sizes."""

    inner: bytes
    next_header: int
    seq: int
    spi: int
    pad_length: int = 0
    tfc_length: int = 0

    @property
    def dummy(self) -> bool:
        """True for a dummy packet (Next Header 59, RFC 4303 s2.6), to be discarded."""
        return self.next_header == IPPROTO_NONE


def malformed_from(e: ParseError, spi: int | None = None, seq: int | None = None) -> MalformedPacket:
    """The MalformedPacket drop for a ParseError met while taking a packet apart."""
    return MalformedPacket(e.what, e.field, e.offset, e.reason, spi, seq)


class Receiver:
    """Inbound processing for one SA with an anti-replay window of `window` packets (0: off)."""

    def __init__(self, sa: SecurityAssociation, window: int = 64, check_padding: bool = True) -> None:
        self.sa, self.spi = sa, sa.spi
        self.window = ReplayWindow(window, sa.esn)
        self._esn = sa.esn
        self.counters: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)
        self.accepted = 0
        self.dummies = 0
        self._tunnel = sa.mode == "tunnel"
        self._udp = sa.udp_encap is not None
        self._esp = EspCodec(sa, check_padding=check_padding) if sa.protocol == "esp" else None
        self._ah = AhCodec(sa) if sa.protocol == "ah" else None
        self._fast = self._esp is not None and not self._udp
        fast = receiver_fast(self, self._unprotect_counted)
        if fast is not None:
            self.unprotect = fast  # type: ignore[method-assign]  # same signature and results, fewer steps

    @property
    def iv_size(self) -> int:
        """Bytes of IV in each packet of the SA (0 for AH without AES-GMAC)."""
        codec = self._esp or self._ah
        return codec.iv_size if codec is not None else 0

    def unprotect(self, outer: bytes) -> Unprotected:
        """The inner packet of outer (a complete IP packet); PacketDropped, counted by reason, when dropped."""
        return self._unprotect_counted(outer)

    def _unprotect_counted(self, outer: bytes) -> Unprotected:
        if type(outer) is not bytes:  # a bytearray or memoryview: work on a copy, never on the caller's buffer
            outer = bytes(outer)
        try:
            if self._fast and len(outer) >= 28 and outer[0] == 0x45:
                w0, w1, w2, w3, w4, _, w6, w7, w8, w9 = _W10.unpack_from(outer)
                if w4 & 0xFF == IPPROTO_ESP and 28 <= w1 <= len(outer) and not w3 & 0x3FFF:
                    return self._fast_v4(outer, w0, w1, w2, w3, w4, w6, w7, w8, w9)
            return self._unprotect(outer)
        except PacketDropped as e:
            self.counters[e.reason] += 1
            raise

    def _fast_v4(self, outer: bytes, w0: int, end: int, w2: int, w3: int, w4: int, w6: int, w7: int, w8: int, w9: int) -> Unprotected:
        """ESP straight after an IPv4 header without options: the common case, with less framing code."""
        spi = self.spi
        pkt_spi, seq_low = _unpack_II(outer, 20)
        if pkt_spi != spi:
            raise PacketDropped("unknown_spi", f"SPI {pkt_spi:#010x} is not this SA's {spi:#010x}", pkt_spi)
        window = self.window
        seq = seq_low if not self._esn and seq_low > window.top else window.check(seq_low, spi)
        payload, nh, pad_length = self._esp.open_at(outer, 20, end, seq)
        if self._tunnel or nh == IPPROTO_NONE:
            return self._finish(None, outer, payload, nh, seq, pad_length)
        tfc = 0
        if nh == IPPROTO_UDP and len(payload) >= 8:  # TFC padding after a UDP datagram (RFC 4303 s2.7)
            ulen = payload[4] << 8 | payload[5]
            if 8 <= ulen < len(payload):
                tfc, payload = len(payload) - ulen, payload[:ulen]
        window.accept(seq)
        self.accepted += 1
        total = 20 + len(payload)
        w4 = (w4 & 0xFF00) | nh
        c = w0 + total + w2 + w3 + w4 + w6 + w7 + w8 + w9
        c = (c & 0xFFFF) + (c >> 16)
        c = (c & 0xFFFF) + (c >> 16)
        return Unprotected(_W10.pack(w0, total, w2, w3, w4, ~c & 0xFFFF, w6, w7, w8, w9) + payload, nh, seq, spi, pad_length, tfc)

    def _unprotect(self, outer: bytes) -> Unprotected:
        try:
            view = parse_ip(outer, "outer packet")
        except ParseError as e:
            raise malformed_from(e) from None
        off, end, proto = view.offset, view.length, view.proto
        spi = self.spi
        if self._esp is not None:
            if self._udp:
                if proto != IPPROTO_UDP:
                    raise MalformedPacket("outer packet", "protocol", view.proto_pos, f"{proto}, expected UDP-encapsulated ESP (17)")
                if end - off < 8 or struct.unpack_from("!H", outer, off + 4)[0] != end - off:
                    raise MalformedPacket("UDP header", "length", off + 4, f"does not match the {end - off} bytes after the IP header")
                off += 8
                if end - off == 1 and outer[off] == 0xFF:
                    raise MalformedPacket("UDP 4500 payload", "ESP header", off, "a NAT-keepalive, not ESP")
                if outer[off:off + 4] == NON_ESP_MARKER:
                    raise MalformedPacket("UDP 4500 payload", "non-ESP marker", off, "an IKE message, not ESP")
            elif proto != IPPROTO_ESP:
                raise MalformedPacket("outer packet", "protocol", view.proto_pos, f"{proto}, expected ESP (50)")
            if end - off < 8:
                raise MalformedPacket("ESP", "header", off, f"{end - off} bytes, need 8 for SPI and sequence number")
            pkt_spi, seq_low = _unpack_II(outer, off)
            if pkt_spi != spi:
                raise PacketDropped("unknown_spi", f"SPI {pkt_spi:#010x} is not this SA's {spi:#010x}", pkt_spi)
            seq = self.window.check(seq_low, spi)
            payload, nh, pad_length = self._esp.open_at(outer, off, end, seq)
        else:
            assert self._ah is not None
            if proto != IPPROTO_AH:
                raise MalformedPacket("outer packet", "protocol", view.proto_pos, f"{proto}, expected AH (51)")
            nh, pkt_spi, seq_low = self._ah.parse(outer, view)
            if pkt_spi != spi:
                raise PacketDropped("unknown_spi", f"SPI {pkt_spi:#010x} is not this SA's {spi:#010x}", pkt_spi)
            seq = self.window.check(seq_low, spi)
            try:
                payload, nh = self._ah.open(outer, view, seq)
            except ParseError as e:
                if isinstance(e, PacketDropped):
                    raise
                raise malformed_from(e, spi, seq) from None
            pad_length = 0
        return self._finish(view, outer, payload, nh, seq, pad_length)

    def _finish(self, view: IpView | None, outer: bytes, payload: bytes, nh: int, seq: int, pad_length: int) -> Unprotected:
        """Checks on the decrypted content, the window update, and the inner packet (view None: only tunnel mode)."""
        spi = self.spi
        tfc = 0
        if nh == IPPROTO_NONE and self._esp is not None:
            inner = b""
        elif self._tunnel:
            if nh not in (IPPROTO_IPIP, IPPROTO_IPV6):
                raise MalformedPacket("ESP trailer" if self._esp else "AH", "next header", 0, f"{nh} in tunnel mode, expected 4 or 41", spi, seq)
            try:
                inner_view = parse_ip(payload, "inner packet", _NO_EXT)
            except ParseError as e:
                raise malformed_from(e, spi, seq) from None
            if inner_view.version != (4 if nh == IPPROTO_IPIP else 6):
                raise MalformedPacket("inner packet", "version", 0, f"IPv{inner_view.version} under Next Header {nh}", spi, seq)
            tfc = len(payload) - inner_view.length
            inner = payload[:inner_view.length] if tfc else payload
        else:
            if nh == IPPROTO_UDP and len(payload) >= 8:
                ulen = struct.unpack_from("!H", payload, 4)[0]
                if 8 <= ulen < len(payload):
                    tfc = len(payload) - ulen
                    payload = payload[:ulen]
            assert view is not None
            inner = with_payload(view, outer, nh, payload)
            if self._udp and nh in (6, 17):  # a NAT changed the addresses the sender summed (RFC 3948 s3.1.2)
                try:
                    inner = fix_transport_checksum(inner)
                except ParseError:
                    pass  # a TCP/UDP header too short to carry a checksum: handed on as it came
        self.window.accept(seq)
        if nh == IPPROTO_NONE:
            self.dummies += 1
        else:
            self.accepted += 1
        return Unprotected(inner, nh, seq, spi, pad_length, tfc)
