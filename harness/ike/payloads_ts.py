"""Traffic Selector payloads TSi/TSr (RFC 7296 s3.13) and the Configuration payload CP (s3.15)."""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

from harness.addresses import ip_address
from harness.ike.constants import PAYLOAD
from harness.ike.payloads_base import ParseContext, Payload

TS_IPV4_ADDR_RANGE, TS_IPV6_ADDR_RANGE = 7, 8
_ADDR_SIZE = {TS_IPV4_ADDR_RANGE: 4, TS_IPV6_ADDR_RANGE: 16}
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass
class Selector:
    """One address-range traffic selector (s3.13.1): IP protocol (0 any), port range, address range."""

    start_address: Address
    end_address: Address
    ip_protocol: int = 0
    start_port: int = 0
    end_port: int = 65535

    @property
    def ts_type(self) -> int:
        """TS_IPV4_ADDR_RANGE (7) or TS_IPV6_ADDR_RANGE (8), from the address family."""
        return TS_IPV4_ADDR_RANGE if self.start_address.version == 4 else TS_IPV6_ADDR_RANGE

    def encode(self) -> bytes:
        """The selector substructure."""
        addrs = self.start_address.packed + self.end_address.packed
        return struct.pack("!BBHHH", self.ts_type, self.ip_protocol, 8 + len(addrs), self.start_port,
                           self.end_port) + addrs


@dataclass
class RawSelector:
    """A selector of another TS Type (TS_FC_ADDR_RANGE, TS_SECLABEL, unassigned), kept as bytes."""

    ts_type: int
    data: bytes = b""  # everything after TS Type (1), second octet (1) and Selector Length (2)
    second: int = 0  # IP Protocol ID / RESERVED octet

    def encode(self) -> bytes:
        """The selector substructure."""
        return struct.pack("!BBH", self.ts_type, self.second, 4 + len(self.data)) + self.data


@dataclass
class _TS(Payload):
    MIN_BODY = 4
    selectors: list[Selector | RawSelector] = field(default_factory=list)
    body_reserved: int = 0

    def encode_body(self) -> bytes:
        return struct.pack("!B", len(self.selectors) & 0xFF) + self.body_reserved.to_bytes(3, "big") + \
            b"".join(s.encode() for s in self.selectors)

    @classmethod
    def decode_body(cls, body: bytes, offset: int, ctx: ParseContext) -> _TS:
        name = PAYLOAD.name(cls.PAYLOAD_TYPE)
        count, res = body[0], int.from_bytes(body[1:4], "big")
        if res:
            ctx.reserved(res, name, "RESERVED", offset + 1)
        out: list[Selector | RawSelector] = []
        off = 4
        while off < len(body):
            def where() -> str:  # the selector's path, built only for a finding
                return f"{name}/selector[{len(out)}]"
            if len(body) - off < 4:
                ctx.fail(where(), "Selector header", offset + off, f"{len(body) - off} bytes left, need 4")
            ts_type, proto, slen = struct.unpack_from("!BBH", body, off)
            if slen < 4 or slen > len(body) - off:
                ctx.fail(where(), "Selector Length", offset + off + 2, f"{slen} ({len(body) - off} bytes left)")
            if ts_type in _ADDR_SIZE:
                size = _ADDR_SIZE[ts_type]
                if slen != 8 + 2 * size:
                    ctx.fail(where(), "Selector Length", offset + off + 2, f"{slen}, type {ts_type} needs {8 + 2 * size}")
                sp, ep = struct.unpack_from("!HH", body, off + 4)
                a = body[off + 8:off + 8 + size]
                b = body[off + 8 + size:off + 8 + 2 * size]
                out.append(Selector(ip_address(a), ip_address(b), proto, sp, ep))
            else:
                out.append(RawSelector(ts_type, body[off + 4:off + slen], proto))
            off += slen
        if len(out) != count:
            ctx.fail(name, "Number of TSs", offset, f"{count}, but {len(out)} selectors present")
        return cls(out, body_reserved=res)


@dataclass
class TSi(_TS):
    """Traffic Selector - Initiator (s3.13)."""

    PAYLOAD_TYPE = 44


@dataclass
class TSr(_TS):
    """Traffic Selector - Responder (s3.13)."""

    PAYLOAD_TYPE = 45


@dataclass
class ConfigAttribute:
    """Configuration attribute (s3.15.1): type (15 bits) and value (may be empty in a CFG_REQUEST)."""

    type: int
    value: bytes = b""

    def encode(self) -> bytes:
        """R bit (zero), type, length, value."""
        return struct.pack("!HH", self.type & 0x7FFF, len(self.value)) + self.value


@dataclass
class CP(Payload):
    """Configuration payload (s3.15): CFG Type (1 REQUEST, 2 REPLY, 3 SET, 4 ACK) and attributes."""

    PAYLOAD_TYPE = 47
    MIN_BODY = 4
    cfg_type: int
    attributes: list[ConfigAttribute] = field(default_factory=list)
    body_reserved: int = 0

    def encode_body(self) -> bytes:
        return struct.pack("!B", self.cfg_type) + self.body_reserved.to_bytes(3, "big") + \
            b"".join(a.encode() for a in self.attributes)

    @classmethod
    def decode_body(cls, body: bytes, offset: int, ctx: ParseContext) -> CP:
        res = int.from_bytes(body[1:4], "big")
        ctx.reserved(res, "CP", "RESERVED", offset + 1)
        attrs: list[ConfigAttribute] = []
        off = 4
        while off < len(body):
            where = f"CP/attribute[{len(attrs)}]"
            if len(body) - off < 4:
                ctx.fail(where, "Attribute header", offset + off, f"{len(body) - off} bytes left, need 4")
            atype, alen = struct.unpack_from("!HH", body, off)
            ctx.reserved(atype >> 15, where, "R", offset + off)
            if alen > len(body) - off - 4:
                ctx.fail(where, "Length", offset + off + 2, f"{alen} but {len(body) - off - 4} bytes left")
            attrs.append(ConfigAttribute(atype & 0x7FFF, body[off + 4:off + 4 + alen]))
            off += 4 + alen
        return cls(body[0], attrs, body_reserved=res)
