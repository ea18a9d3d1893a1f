"""Traffic selectors (RFC 7296 s3.13) and the responder's narrowing (s2.9).

A selector is an address range, an IP protocol (0 = any) and a port range. `narrow` gives the
responder's TSi or TSr: the intersections of what the initiator proposed with local policy,
TS_UNACCEPTABLE when nothing is left.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache

from harness.addresses import ip_address
from harness.errors import ConfigError, TsUnacceptable

TS_IPV4_ADDR_RANGE = 7
TS_IPV6_ADDR_RANGE = 8


@dataclass(frozen=True, order=True)
class TrafficSelector:
    """One selector: TS Type, IP Protocol ID, start/end port, start/end address (packed)."""

    ts_type: int
    ip_protocol: int
    start_port: int
    end_port: int
    start_addr: bytes
    end_addr: bytes

    @classmethod
    def of(cls, spec: str, ip_protocol: int = 0, ports: tuple[int, int] = (0, 65535)) -> "TrafficSelector":
        """From "198.18.0.0/24", "2001:db8::1" or "198.18.0.1-198.18.0.9", each optionally with strongSwan's
        "[PROTOCOL]" or "[PROTOCOL/PORT]" suffix ("[udp/40001]", "[17/1000-2000]", "[icmp]"); ConfigError if malformed."""
        try:
            return _selector(cls, spec, ip_protocol, tuple(ports))
        except TypeError:  # an unhashable argument: parse it uncached, failing as the parser does
            return cls._parse(spec, ip_protocol, ports)

    @classmethod
    def _parse(cls, spec: str, ip_protocol: int, ports: tuple[int, int]) -> "TrafficSelector":
        if spec.endswith("]") and "[" in spec:
            spec, _, suffix = spec[:-1].partition("[")
            ip_protocol, ports = protocol_port(suffix, spec)
        spec = spec.strip()
        try:
            if "-" in spec:
                a, b = (ipaddress.ip_address(x.strip()) for x in spec.split("-", 1))
            else:
                net = ipaddress.ip_network(spec, strict=False)
                a, b = net[0], net[-1]
        except ValueError as e:
            raise ConfigError(f"traffic selector {spec!r}: {e}") from None
        if a.version != b.version or int(a) > int(b):
            raise ConfigError(f"traffic selector {spec!r}: not an address range")
        if not (0 <= ports[0] <= 65535 and 0 <= ports[1] <= 65535 and 0 <= ip_protocol <= 255):
            raise ConfigError(f"traffic selector {spec!r}: protocol or port out of range")
        return cls(TS_IPV4_ADDR_RANGE if a.version == 4 else TS_IPV6_ADDR_RANGE, ip_protocol,
                   ports[0], ports[1], a.packed, b.packed)

    @property
    def start(self) -> int:
        """Start address as an integer."""
        return int.from_bytes(self.start_addr, "big")

    @property
    def end(self) -> int:
        """End address as an integer."""
        return int.from_bytes(self.end_addr, "big")

    def intersect(self, other: "TrafficSelector") -> "TrafficSelector | None":
        """The selector both allow, or None."""
        if self.ts_type != other.ts_type:
            return None
        if self.ip_protocol and other.ip_protocol and self.ip_protocol != other.ip_protocol:
            return None
        lo, hi = max(self.start, other.start), min(self.end, other.end)
        plo, phi = max(self.start_port, other.start_port), min(self.end_port, other.end_port)
        if lo > hi or plo > phi:
            return None
        n = len(self.start_addr)
        return TrafficSelector(self.ts_type, self.ip_protocol or other.ip_protocol, plo, phi,
                               lo.to_bytes(n, "big"), hi.to_bytes(n, "big"))

    def contains(self, other: "TrafficSelector") -> bool:
        """True when every packet other selects is also selected by self."""
        return self.intersect(other) == other

    def covers_address(self, addr: str | bytes) -> bool:
        """True when the address lies in the range (protocol and ports not considered)."""
        packed = addr if isinstance(addr, bytes) else ip_address(addr).packed
        return len(packed) == len(self.start_addr) and self.start <= int.from_bytes(packed, "big") <= self.end

    def __str__(self) -> str:
        a, b = ipaddress.ip_address(self.start_addr), ipaddress.ip_address(self.end_addr)
        rng = str(a) if a == b else f"{a}-{b}"
        nets = list(ipaddress.summarize_address_range(a, b))
        if a != b and len(nets) == 1:
            rng = str(nets[0])
        proto = f"[{self.ip_protocol}/{self.start_port}-{self.end_port}]" if self.ip_protocol or \
            (self.start_port, self.end_port) != (0, 65535) else ""
        return rng + proto


@lru_cache(maxsize=1024)
def _selector(cls: type[TrafficSelector], spec: str, ip_protocol: int, ports: tuple[int, int]) -> TrafficSelector:
    """TrafficSelector.of, parsed once per distinct spec (selectors are immutable; ConfigError is raised anew)."""
    return cls._parse(spec, ip_protocol, ports)


PROTOCOLS = {"icmp": 1, "tcp": 6, "udp": 17, "ipv6-icmp": 58, "icmpv6": 58, "sctp": 132}


def protocol_port(text: str, where: str = "") -> tuple[int, tuple[int, int]]:
    """(IP protocol, port range) of "udp", "udp/40001", "17/1000-2000" or "tcp/%any"; ConfigError naming text."""
    proto, _, port = text.strip().lower().partition("/")
    try:
        number = PROTOCOLS[proto] if proto in PROTOCOLS else int(proto)
        if not port or port == "%any":
            lo, hi = 0, 65535
        else:
            first, _, last = port.partition("-")
            lo, hi = int(first), int(last or first)
    except ValueError:
        raise ConfigError(f"traffic selector {where}[{text}]: not PROTOCOL or PROTOCOL/PORT (protocols: "
                          f"{', '.join(PROTOCOLS)} or a number)") from None
    if not (0 < number <= 255 and 0 <= lo <= hi <= 65535):
        raise ConfigError(f"traffic selector {where}[{text}]: protocol or port out of range")
    return number, (lo, hi)


def protoport_suffix(proto: int, lo: int, hi: int) -> str:
    """The "[PROTOCOL/PORT]" suffix with numbers ("[17/40001]", "[17/1000-2000]", "[1]"), "" for any protocol and port."""
    if not proto and (lo, hi) == (0, 65535):
        return ""
    port = "" if (lo, hi) == (0, 65535) else f"/{lo}" if lo == hi else f"/{lo}-{hi}"
    return f"[{proto}{port}]"


@dataclass(frozen=True)
class Narrowed:
    """The responder's selectors for one side: narrowed if not all that was proposed, additional if it left some out."""

    selectors: tuple[TrafficSelector, ...]
    narrowed: bool
    additional_possible: bool


def narrow(proposed: list[TrafficSelector], policy: list[TrafficSelector], single: bool = False) -> Narrowed:
    """Narrow proposed selectors to local policy (RFC 7296 s2.9); TsUnacceptable when nothing is left.

    single=True keeps only the first intersection (a responder that installs one pair per
    SA); additional_possible then says it dropped others (ADDITIONAL_TS_POSSIBLE).
    """
    out: list[TrafficSelector] = []
    for p in proposed:
        for q in policy:
            x = p.intersect(q)
            if x is not None and x not in out:
                out.append(x)
    if not out:
        raise TsUnacceptable("traffic selectors " + ", ".join(map(str, proposed)) + " outside policy "
                             + ", ".join(map(str, policy)))
    additional = single and len(out) > 1
    if single:
        out = out[:1]
    return Narrowed(tuple(out), tuple(out) != tuple(proposed), additional)


def check_narrowed(proposed: list[TrafficSelector], received: list[TrafficSelector]) -> None:
    """The initiator's check that the responder only narrowed (each received selector inside a proposed one)."""
    for r in received:
        if not any(p.contains(r) for p in proposed):
            raise TsUnacceptable(f"responder's selector {r} is not a subset of what was proposed")
