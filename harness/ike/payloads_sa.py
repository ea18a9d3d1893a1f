"""The Security Association payload (RFC 7296 s3.3): proposals, transforms, transform attributes."""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from harness.ike.payloads_base import ParseContext, Payload

KEY_LENGTH = 14  # RFC 7296 s3.3.5: the only transform attribute, TV format
_MORE_PROPOSALS, _MORE_TRANSFORMS = 2, 3  # "Last Substruc" values (s3.3.1, s3.3.2)
_TRANSFORM = struct.Struct("!BBHBBH")  # Last Substruc, RESERVED, Transform Length, Type, RESERVED, Transform ID


@dataclass
class Attribute:
    """Transform attribute (s3.3.5): an int value is TV format (AF=1, 16 bits), bytes are TLV."""

    type: int
    value: int | bytes

    def encode(self) -> bytes:
        """AF bit, type, then the 2-byte value (TV) or length and value (TLV)."""
        if isinstance(self.value, int):
            return struct.pack("!HH", 0x8000 | self.type, self.value)
        return struct.pack("!HH", self.type & 0x7FFF, len(self.value)) + self.value


@dataclass
class Transform:
    """Transform substructure (s3.3.2): type (ENCR, PRF, INTEG, KE, ESN), transform ID, attributes."""

    type: int
    id: int
    attributes: list[Attribute] = field(default_factory=list)

    @property
    def key_length(self) -> int | None:
        """The Key Length attribute in bits, or None."""
        for a in self.attributes:  # a loop, not next(genexpr): asked for every transform decoded
            if a.type == KEY_LENGTH and isinstance(a.value, int):
                return int(a.value)
        return None

    def encode(self, last: bool) -> bytes:
        """The transform substructure with its Last Substruc field."""
        attrs = b"".join(a.encode() for a in self.attributes)
        return struct.pack("!BBHBBH", 0 if last else _MORE_TRANSFORMS, 0, 8 + len(attrs), self.type, 0, self.id) + attrs


@dataclass
class Proposal:
    """Proposal substructure (s3.3.1): number, Protocol ID (1 IKE, 2 AH, 3 ESP), SPI, transforms."""

    number: int
    protocol: int
    spi: bytes = b""
    transforms: list[Transform] = field(default_factory=list)

    def encode(self, last: bool) -> bytes:
        """The proposal substructure with its Last Substruc field."""
        n = len(self.transforms)
        body = b"".join(t.encode(i == n - 1) for i, t in enumerate(self.transforms))
        return struct.pack("!BBHBBBB", 0 if last else _MORE_PROPOSALS, 0, 8 + len(self.spi) + len(body),
                           self.number, self.protocol, len(self.spi), n & 0xFF) + self.spi + body


@dataclass
class SA(Payload):
    """Security Association payload (s3.3): one or more proposals."""

    PAYLOAD_TYPE = 33
    MIN_BODY = 8
    proposals: list[Proposal] = field(default_factory=list)

    def encode_body(self) -> bytes:
        n = len(self.proposals)
        return b"".join(p.encode(i == n - 1) for i, p in enumerate(self.proposals))

    @classmethod
    def decode_body(cls, body: bytes, offset: int, ctx: ParseContext) -> SA:
        proposals, off, more = [], 0, True
        while more:
            where = f"SA/proposal[{len(proposals)}]"
            if len(body) - off < 8:
                ctx.fail(where, "Proposal header", offset + off, f"{len(body) - off} bytes left, a proposal needs 8")
            last, res, plen, num, proto, spi_size, ntrans = struct.unpack_from("!BBHBBBB", body, off)
            if last not in (0, _MORE_PROPOSALS):
                ctx.fail(where, "Last Substruc", offset + off, f"{last}, must be 0 or 2")
            ctx.reserved(res, where, "RESERVED", offset + off + 1)
            if plen < 8 + spi_size or plen > len(body) - off:
                ctx.fail(where, "Proposal Length", offset + off + 2,
                         f"{plen} (SPI Size {spi_size}, {len(body) - off} bytes left)")
            spi = body[off + 8:off + 8 + spi_size]
            transforms = _transforms(body[off + 8 + spi_size:off + plen], offset + off + 8 + spi_size, ctx, where)
            if len(transforms) != ntrans:
                ctx.fail(where, "Num Transforms", offset + off + 7, f"{ntrans}, but {len(transforms)} transforms present")
            proposals.append(Proposal(num, proto, spi, transforms))
            off += plen
            more = last == _MORE_PROPOSALS
            if more and off == len(body):
                ctx.fail(where, "Last Substruc", offset + off - plen, "announces another proposal, none follows")
        if off != len(body):
            ctx.fail("SA", "Payload Length", offset + off, f"{len(body) - off} bytes after the last proposal")
        return cls(proposals)


def _transforms(data: bytes, offset: int, ctx: ParseContext, where: str) -> list[Transform]:
    out: list[Transform] = []
    off = 0
    size = len(data)
    while off < size:
        def tw() -> str:  # the transform's path, built only for a finding
            return f"{where}/transform[{len(out)}]"
        if size - off < 8:
            ctx.fail(tw(), "Transform header", offset + off, f"{size - off} bytes left, a transform needs 8")
        last, res1, tlen, ttype, res2, tid = _TRANSFORM.unpack_from(data, off)
        if last not in (0, _MORE_TRANSFORMS):
            ctx.fail(tw(), "Last Substruc", offset + off, f"{last}, must be 0 or 3")
        if tlen < 8 or tlen > size - off:
            ctx.fail(tw(), "Transform Length", offset + off + 2, f"{tlen} ({size - off} bytes left)")
        if res1:
            ctx.reserved(res1, tw(), "RESERVED", offset + off + 1)
        if res2:
            ctx.reserved(res2, tw(), "RESERVED", offset + off + 5)
        attrs = _attributes(data[off + 8:off + tlen], offset + off + 8, ctx, tw()) if tlen > 8 else []
        out.append(Transform(ttype, tid, attrs))
        off += tlen
        if (last == 0) != (off == size):
            ctx.fail(f"{where}/transform[{len(out) - 1}]", "Last Substruc", offset + off - tlen,
                     f"{last} but {'more transforms follow' if off < size else 'no transform follows'}")
    return out


def _attributes(data: bytes, offset: int, ctx: ParseContext, where: str) -> list[Attribute]:
    out: list[Attribute] = []
    off = 0
    while off < len(data):
        if len(data) - off < 4:
            ctx.fail(where, "Attribute", offset + off, f"{len(data) - off} bytes left, an attribute needs 4")
        atype, val = struct.unpack_from("!HH", data, off)
        if atype & 0x8000:
            out.append(Attribute(atype & 0x7FFF, val))
            off += 4
            continue
        if val > len(data) - off - 4:
            ctx.fail(where, "Attribute Length", offset + off + 2, f"{val} but {len(data) - off - 4} bytes left")
        if atype == KEY_LENGTH:
            ctx.violation("attribute-format", where, "Attribute Format", offset + off,
                          "Key Length must use TV format (RFC 7296 s3.3.5)")
        out.append(Attribute(atype, data[off + 4:off + 4 + val]))
        off += 4 + val
    return out
