"""No clear-text packet between the two ends that a Child SA's selectors cover, while the Child SA stands (RFC 4301 s5).

``cleartext_problems(where, packets, results, selectors) -> list[str]`` for one segment's capture (the packets and
their harness.tools.capture_decrypt results, in capture order). Only a segment that carries IKE counts: the one
between the two ends (a LAN behind a tunnel gateway carries its hosts' traffic in clear, as it should).

The protected span of a segment opens at the frame of a response that makes a Child SA: an IKE_AUTH response with
an SA payload, a CREATE_CHILD_SA response with TSi/TSr (from the moment it is sent, the responder must protect
what the SA covers, and the initiator from when it has it: a reply in clear sent after it is a leak). It closes at
an INFORMATIONAL request with a Delete payload, except the Delete that ends a rekey (announced by a CREATE_CHILD_SA
request with N(REKEY_SA), or one rekeying the IKE SA: SA and KE without TSi), after which the new SA covers the
same traffic. A message the capture cannot decrypt (no keys for its IKE SA) is judged by its header alone: an
IKE_AUTH or CREATE_CHILD_SA response opens, any INFORMATIONAL request closes (a liveness check then ends the span
early: the check is only weaker, never wrong).

Inside the span a clear IPv4/IPv6 packet is a problem when a selector pair covers it in either direction (its
source in one side's ranges, its destination in the other's, its protocol and ports inside theirs). Legitimately
in clear, and never judged: ESP and AH themselves; IKE on UDP 500 and 4500, with ESP in UDP and NAT keepalives
there (IKE protects itself, and every implementation lets its own IKE bypass its SPD); ICMP error messages
(ICMPv4 types 3, 4, 5, 11, 12, ICMPv6 1 to 4: RFC 4301 s6 lets a node accept and send them unprotected by
policy, and they answer the network, not the SA's traffic); and IPv6 Neighbor Discovery (ICMPv6 133 to 137, the
link's own control traffic). A packet whose ports cannot be read (a non-first fragment) is judged only by a
selector that names no port range.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from harness.errors import ParseError
from harness.esp.ip import parse_ip
from harness.ike.ts import TrafficSelector
from harness.tools.capture_decrypt import PacketResult
from harness.tools.pcapio import CapturedPacket, ip_of

IKE_PORTS = frozenset((500, 4500))
ICMP_ERRORS = frozenset((3, 4, 5, 11, 12))       # ICMPv4 error messages
ICMP6_UNPROTECTED = frozenset((1, 2, 3, 4, 133, 134, 135, 136, 137))  # ICMPv6 errors and Neighbor Discovery
PORTED = frozenset((6, 17, 132))                   # TCP, UDP, SCTP: ports after the header
ALL_PORTS = (0, 65535)
Selectors = tuple[Sequence[TrafficSelector], Sequence[TrafficSelector]]  # (one side's ranges, the other side's)


@dataclass(frozen=True)
class ClearPacket:
    """What a clear IP packet offers a selector: addresses, protocol, and ports (None where none can be read)."""

    src: bytes
    dst: bytes
    proto: int
    sport: int | None
    dport: int | None
    icmp_type: int | None

    def describe(self) -> str:
        """One line: "ICMP 198.18.0.3 -> 198.18.0.2 type 0" or "UDP 198.18.0.3:40001 -> ..."."""
        s, d = ipaddress.ip_address(self.src), ipaddress.ip_address(self.dst)
        name = {1: "ICMP", 58: "ICMPv6", 6: "TCP", 17: "UDP", 132: "SCTP"}.get(self.proto, f"protocol {self.proto}")
        if self.sport is not None:
            return f"{name} {s}:{self.sport} -> {d}:{self.dport}"
        return f"{name} {s} -> {d}" + (f" type {self.icmp_type}" if self.icmp_type is not None else "")


def clear_packet(ip: bytes) -> ClearPacket | None:
    """The clear packet ip as selectors see it, or None when it is legitimately in clear (see module doc) or no IP."""
    try:
        view = parse_ip(ip, "captured packet")
    except ParseError:
        return None
    proto, body = view.proto, ip[view.offset:view.length]
    first = view.version == 6 or int.from_bytes(ip[6:8], "big") & 0x1FFF == 0  # an IPv4 non-first fragment has no ports
    if proto in (50, 51):
        return None
    sport = dport = icmp = None
    if first and proto in PORTED and len(body) >= 4:
        sport, dport = int.from_bytes(body[0:2], "big"), int.from_bytes(body[2:4], "big")
        if proto == 17 and (sport in IKE_PORTS or dport in IKE_PORTS):
            return None
    elif first and proto in (1, 58) and body:
        icmp = body[0]
        if icmp in (ICMP_ERRORS if proto == 1 else ICMP6_UNPROTECTED):
            return None
    return ClearPacket(view.src, view.dst, proto, sport, dport, icmp)


def _side(ts: TrafficSelector, addr: bytes, proto: int, port: int | None) -> bool:
    if not ts.covers_address(addr) or (ts.ip_protocol and ts.ip_protocol != proto):
        return False
    if (ts.start_port, ts.end_port) == ALL_PORTS:
        return True
    return port is not None and ts.start_port <= port <= ts.end_port


def covered(p: ClearPacket, selectors: Iterable[Selectors]) -> bool:
    """True when some selector pair covers p in either direction."""
    for a, b in selectors:
        for here, there in ((a, b), (b, a)):
            if any(_side(s, p.src, p.proto, p.sport) for s in here) and \
                    any(_side(d, p.dst, p.proto, p.dport) for d in there):
                return True
    return False


def protected_frames(results: Sequence[PacketResult]) -> list[tuple[int, int | None]]:
    """The (first, last) frame index ranges of a segment during which a Child SA stood (last None: to the end)."""
    spans: list[tuple[int, int | None]] = []
    start: int | None = None
    rekeys: set[tuple[bytes, bytes, int]] = set()  # rekey requests seen (a retransmission counts once)
    deletes: set[tuple[bytes, bytes, int]] = set()
    pending = 0  # rekeys whose Delete is still to come
    for r in results:
        m = r.ike
        if m is None or m.status == "failed":
            continue
        key = (m.spi_i, m.spi_r, m.message_id or 0)
        opened = m.status == "decrypted"
        if m.response and m.exchange in ("IKE_AUTH", "CREATE_CHILD_SA"):
            makes_child = "SA" in m.payloads if m.exchange == "IKE_AUTH" else "TSi" in m.payloads
            if (makes_child or not opened) and start is None:
                start = min([r.index, *m.reassembled_from])
        elif not m.response and m.exchange == "CREATE_CHILD_SA" and opened and key not in rekeys:
            if "N(REKEY_SA)" in m.payloads or ("KE" in m.payloads and "TSi" not in m.payloads):
                rekeys.add(key)
                pending += 1
        elif not m.response and m.exchange == "INFORMATIONAL" and (not opened or "D" in m.payloads) \
                and key not in deletes:
            deletes.add(key)
            if opened and pending:
                pending -= 1  # the Delete that ends a rekey: the new SA covers the same traffic
                continue
            if start is not None:
                spans.append((start, r.index))
                start = None
    if start is not None:
        spans.append((start, None))
    return spans


def cleartext_problems(where: str, packets: Sequence[CapturedPacket], results: Sequence[PacketResult],
                       selectors: Iterable[Selectors]) -> list[str]:
    """One line per clear packet inside a protected span that a selector pair covers (see module doc)."""
    selectors = list(selectors)
    if not selectors or not any(r.ike is not None for r in results):
        return []
    spans = protected_frames(results)
    out: list[str] = []
    for pkt in packets:
        if not any(a < pkt.index and (b is None or pkt.index < b) for a, b in spans):
            continue
        split = ip_of(pkt)
        p = clear_packet(split[1]) if split else None
        if p is not None and covered(p, selectors):
            out.append(f"{where} frame {pkt.index}: {p.describe()} in clear while a Child SA covering it stood "
                       f"(RFC 4301 s5: traffic the SA's selectors cover is protected)")
    return out
