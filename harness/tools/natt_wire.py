"""NAT traversal as a capture shows it (RFC 7296 s2.23, RFC 3948): the IKE, ESP and NAT-keepalive packets of a
segment, and what the NAT_DETECTION_*_IP notifies of an IKE_SA_INIT message say about the packet that carried them.

``natt_packets(packets)`` reads every IPv4 packet of a capture that is IKE (UDP 500, or 4500 behind the non-ESP
marker), ESP (raw, or UDP-encapsulated on 4500) or a NAT-keepalive (one 0xFF octet on 4500) into a ``NattPacket``.
``nat_detection(p)`` compares an IKE_SA_INIT message's hashes with the addresses and ports of the packet as captured:
on the sender's segment they must match what it sent (unless it fakes them to force encapsulation), on the receiver's
segment a mismatch is a NAT between them.
"""
from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

from harness.errors import ParseError
from harness.esp.ip import addr_text, parse_ip
from harness.esp.udpencap import KEEPALIVE
from harness.ike.message import IKE_SA_INIT, Header, Message
from harness.ike.natt import nat_detected
from harness.tools.ipsec_locate import locate, locate_ike
from harness.tools.pcapio import CapturedPacket, ip_of

KINDS = ("ike", "esp", "keepalive")
NAT_T_PORT = 4500


@dataclass(frozen=True)
class NattPacket:
    """One IKE, ESP or NAT-keepalive packet of a capture: where it went, and how (port 4500, UDP-encapsulated)."""

    index: int
    ts_ns: int
    kind: str  # KINDS
    src: str
    sport: int  # 0 for raw ESP
    dst: str
    dport: int
    udp: bool  # IKE behind the non-ESP marker on 4500, ESP in UDP (RFC 3948 s2.1, s2.2), or a keepalive
    spi: int = 0  # ESP: its SPI
    ike: Header | None = None  # IKE: its header
    message: bytes = b""  # IKE: the message (no marker)

    @property
    def on_natt_port(self) -> bool:
        """True for UDP port 4500 at either end."""
        return NAT_T_PORT in (self.sport, self.dport)


@dataclass(frozen=True)
class NatDetection:
    """What one IKE_SA_INIT message's NAT_DETECTION notifies say of the packet as captured: None where absent."""

    source_matches: bool | None  # a NAT_DETECTION_SOURCE_IP is SHA-1(SPIs | the packet's source address | port)
    destination_matches: bool | None  # NAT_DETECTION_DESTINATION_IP is that of the packet's destination


def _keepalive(ip: bytes) -> tuple[str, int, str, int] | None:
    """(src, sport, dst, dport) of a NAT-keepalive (RFC 3948 s2.3: one 0xFF octet on UDP 4500), else None."""
    view = parse_ip(ip, "IP packet")
    if view.proto != 17 or view.offset + 8 > view.length:
        return None
    sport, dport = struct.unpack_from("!HH", ip, view.offset)
    if NAT_T_PORT not in (sport, dport) or ip[view.offset + 8:view.length] != KEEPALIVE:
        return None
    return addr_text(view.src), sport, addr_text(view.dst), dport


def _one(p: CapturedPacket, ip: bytes) -> NattPacket | None:
    ike = locate_ike(ip)
    if ike is not None:
        head = Header.decode(ike.data) if len(ike.data) >= 28 else None
        return NattPacket(p.index, p.ts_ns, "ike", ike.src, ike.sport, ike.dst, ike.dport, ike.marker, ike=head,
                          message=ike.data)
    loc = locate(ip)
    if loc is not None and loc.protocol == "esp":
        ports = struct.unpack_from("!HH", loc.ip, loc.offset - 8) if loc.udp_encap else (0, 0)
        return NattPacket(p.index, p.ts_ns, "esp", loc.src, ports[0], loc.dst, ports[1], loc.udp_encap, loc.spi)
    ka = _keepalive(ip)
    if ka is not None:
        return NattPacket(p.index, p.ts_ns, "keepalive", ka[0], ka[1], ka[2], ka[3], True)
    return None


def natt_packets(packets: Iterable[CapturedPacket]) -> list[NattPacket]:
    """The IKE, ESP and NAT-keepalive packets of a capture over IPv4, in capture order (malformed ones left out:
    the wire check reports those)."""
    out = []
    for p in packets:
        got = ip_of(p)
        if got is None or not got[1] or got[1][0] >> 4 != 4:
            continue
        try:
            one = _one(p, got[1])
        except ParseError:
            continue
        if one is not None:
            out.append(one)
    return out


def nat_detection(p: NattPacket) -> NatDetection:
    """The NAT_DETECTION notifies of an IKE_SA_INIT message checked against the packet that carried them;
    ParseError when p is no IKE_SA_INIT message or does not parse."""
    if p.ike is None or p.ike.exchange_type != IKE_SA_INIT:
        raise ParseError("IKE message", "exchange type", 18, "not IKE_SA_INIT: its NAT_DETECTION notifies are unhashed")
    msg = Message.decode(p.message)  # an IkeParseError is a ParseError
    spi_r = p.ike.spi_r if p.ike.response else bytes(8)
    srcs = [n.data for n in msg.notifies("NAT_DETECTION_SOURCE_IP")]
    dsts = [n.data for n in msg.notifies("NAT_DETECTION_DESTINATION_IP")]
    return NatDetection(None if not srcs else not nat_detected(p.ike.spi_i, spi_r, p.src, p.sport, srcs),
                        None if not dsts else not nat_detected(p.ike.spi_i, spi_r, p.dst, p.dport, dsts))
