"""IKEv2 messages (RFC 7296 s3.1): the header, the payload chain, strict decoding and bent encoding.

Public API (stable; the state machine, `ipsec-interop decrypt` and the suites build on it):

- ``Header(spi_i, spi_r, exchange_type, message_id, initiator=False, response=False, higher_version=False,
  major_version=2, minor_version=0, next_payload=0, length=0, reserved_flags=0)``;
  ``Header.decode(data) -> Header`` (28 bytes, no checks: a peek), ``Header.encode() -> bytes``.
- ``Message(header, payloads)``; ``Message.encode(bends=()) -> bytes`` fills Next Payload and Length;
  ``Message.decode(datagram, strict=False) -> Message`` checks the header (Length vs datagram, major
  version 2 else INVALID_MAJOR_VERSION, reserved flags), every payload (lengths, minimum sizes, critical
  bit of unknown types -> UNSUPPORTED_CRITICAL_PAYLOAD, RESERVED fields) and ordering where the RFC
  mandates it (N(COOKIE) first; SK/SKF last). Malformed input raises `harness.errors.IkeParseError`
  (payload, field, offset, reason, notify, data); tolerated violations land in ``message.findings``
  (strict=True raises for them too). Decoded messages keep ``raw`` (the datagram: RealMessage1/2 for
  AUTH) and each payload its ``raw``/``body_raw`` (IDi body = RestOfInitIDPayload).
- ``message.get(cls)``, ``message.all(cls)``, ``message.notify(name)``, ``message.notifies(name)``,
  ``message.describe(inner=None)`` (a log line), ``describe_payloads(payloads)``.
- Payload classes: see harness.ike.payloads; fault injection: harness.ike.bend.Bend;
  SK/SKF protection, fragmentation, reassembly and ``decrypt_message``: harness.ike.sk.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Sequence, TypeVar

from harness.errors import ConfigError, IkeParseError
from harness.ike import bend as _bend
from harness.ike.bend import Bend
from harness.ike.constants import EXCHANGE, NOTIFY
from harness.ike.payloads import ENCRYPTED, Finding, Notify, ParseContext, Payload, decode_chain, encode_parts

HEADER_SIZE = 28
_HEADER = struct.Struct("!8s8sBBBBII")  # SPIi, SPIr, Next Payload, MjVer|MnVer, Exchange Type, Flags, Message ID, Length
FLAG_I, FLAG_V, FLAG_R = 0x08, 0x10, 0x20
IKE_SA_INIT, IKE_AUTH, CREATE_CHILD_SA, INFORMATIONAL = 34, 35, 36, 37
P = TypeVar("P", bound=Payload)


@dataclass
class Header:
    """The IKE header (RFC 7296 s3.1): SPIi, SPIr, Next Payload, version, exchange, flags I/V/R, Message ID, Length."""

    spi_i: bytes
    spi_r: bytes
    exchange_type: int
    message_id: int
    initiator: bool = False  # I: sent by the original initiator of the IKE SA
    response: bool = False  # R
    higher_version: bool = False  # V
    major_version: int = 2
    minor_version: int = 0
    next_payload: int = field(default=0, compare=False)  # as received; encode() computes it
    length: int = field(default=0, compare=False)  # as received; encode() computes it
    reserved_flags: int = 0  # the five flag bits RFC 7296 reserves (mask 0xC7)

    @property
    def flags(self) -> int:
        """The Flags octet."""
        return (self.reserved_flags & 0xC7) | (FLAG_I if self.initiator else 0) | (FLAG_V if self.higher_version else 0) \
            | (FLAG_R if self.response else 0)

    @property
    def exchange_name(self) -> str:
        """IKE_SA_INIT, IKE_AUTH, ... (or the number)."""
        return EXCHANGE.name(self.exchange_type)

    def encode(self) -> bytes:
        """The 28 header octets as the fields say (next_payload and length as set); ConfigError if out of range."""
        if len(self.spi_i) != 8 or len(self.spi_r) != 8:
            raise ConfigError(f"IKE header: SPIs must be 8 octets (SPIi {len(self.spi_i)}, SPIr {len(self.spi_r)})")
        try:
            return self._pack()
        except (struct.error, OverflowError) as e:
            raise ConfigError(f"IKE header: a field is out of range ({e})") from None

    def _pack(self) -> bytes:
        return struct.pack("!8s8sBBBBII", self.spi_i, self.spi_r, self.next_payload,
                           (self.major_version & 0xF) << 4 | (self.minor_version & 0xF), self.exchange_type,
                           self.flags, self.message_id, self.length)

    @classmethod
    def decode(cls, data: bytes) -> Header:
        """The header fields of a datagram, unchecked beyond its size (a peek for dispatching)."""
        if len(data) < HEADER_SIZE:
            raise IkeParseError("header", "Length", 0, f"datagram of {len(data)} bytes, the IKE header needs {HEADER_SIZE}")
        spi_i, spi_r, np, ver, ex, flags, mid, length = struct.unpack_from("!8s8sBBBBII", data)
        return cls(spi_i, spi_r, ex, mid, bool(flags & FLAG_I), bool(flags & FLAG_R), bool(flags & FLAG_V),
                   ver >> 4, ver & 0xF, np, length, flags & 0xC7)


@dataclass
class Message:
    """One IKEv2 message: header and outer payload chain (an SK/SKF payload, if any, is last)."""

    header: Header
    payloads: list[Payload] = field(default_factory=list)
    raw: bytes = field(default=b"", compare=False, repr=False)
    findings: list[Finding] = field(default_factory=list, compare=False, repr=False)

    def encode(self, bends: Sequence[Bend] = ()) -> bytes:
        """The datagram: Next Payload and Length computed, then the header/payload/datagram bends applied."""
        first, _, parts = encode_parts(self.payloads, bends, inner=False)
        return _bend.apply_datagram(encode_header(self.header, first, parts, bends) + b"".join(parts),
                                    _bend.select(bends, "datagram"))

    @classmethod
    def decode(cls, datagram: bytes, strict: bool = False) -> Message:
        """Parse and check a datagram (no non-ESP marker); IkeParseError naming payload, field and offset."""
        datagram = bytes(datagram)  # bytearray/memoryview in, immutable raw bytes kept
        ctx = ParseContext(strict)
        header = decode_header(datagram, ctx)
        payloads = decode_chain(datagram[HEADER_SIZE:header.length], header.next_payload, ctx, HEADER_SIZE)
        check_order(header, payloads, ctx)
        return cls(header, payloads, datagram, ctx.findings)

    def get(self, kind: type[P]) -> P | None:
        """The first payload of this class, or None."""
        return next((p for p in self.payloads if isinstance(p, kind)), None)

    def all(self, kind: type[P]) -> list[P]:
        """Every payload of this class, in order."""
        return [p for p in self.payloads if isinstance(p, kind)]

    def notifies(self, name: str | int | None = None) -> list[Notify]:
        """Every Notify payload (of one type, by name or number, when given)."""
        want = None if name is None else NOTIFY.value(name)
        return [p for p in self.payloads if isinstance(p, Notify) and (want is None or p.type == want)]

    def notify(self, name: str | int) -> Notify | None:
        """The first Notify of this type, or None."""
        found = self.notifies(name)
        return found[0] if found else None

    def describe(self, inner: Sequence[Payload] | None = None) -> str:
        """One log line: exchange, direction, Message ID and payloads, e.g. IKE_SA_INIT request 0 [ SA KE Nonce N(COOKIE) ]."""
        return f"{self.header.exchange_name} {'response' if self.header.response else 'request'} " \
            f"{self.header.message_id} [ {describe_payloads(self.payloads if inner is None else inner)} ]"


def describe_payloads(payloads: Sequence[Payload]) -> str:
    """Payload names in RFC notation, Notify types by name: SA KE Nonce N(NAT_DETECTION_SOURCE_IP)."""
    return " ".join(f"N({p.type_name})" if isinstance(p, Notify) else p.name for p in payloads)


def encode_header(h: Header, first: int, parts: Sequence[bytes], bends: Sequence[Bend] = ()) -> bytes:
    """The header announcing first and the length of parts, with the header-stage bends."""
    if len(h.spi_i) != 8 or len(h.spi_r) != 8:
        raise ConfigError(f"IKE header: SPIs must be 8 octets (SPIi {len(h.spi_i)}, SPIr {len(h.spi_r)})")
    try:  # Header(..., first, length).encode(), without building the Header
        head = _HEADER.pack(h.spi_i, h.spi_r, first, (h.major_version & 0xF) << 4 | (h.minor_version & 0xF),
                            h.exchange_type, h.flags, h.message_id, HEADER_SIZE + sum(map(len, parts)))
    except (struct.error, OverflowError) as e:
        raise ConfigError(f"IKE header: a field is out of range ({e})") from None
    return _bend.apply_header(head, _bend.select(bends, "header")) if bends else head


def decode_header(datagram: bytes, ctx: ParseContext) -> Header:
    """The header, checked: size, major version, Length against the datagram, reserved flags."""
    h = Header.decode(datagram)
    if h.major_version != 2:
        ctx.fail("header", "MjVer", 17, f"major version {h.major_version}, this implementation speaks 2",
                 notify="INVALID_MAJOR_VERSION")
    if h.length != len(datagram):
        ctx.fail("header", "Length", 24, f"Length {h.length} but the datagram has {len(datagram)} bytes")
    if h.exchange_type not in EXCHANGE:
        ctx.note("unknown-exchange-type", "header", "Exchange Type", 18, f"exchange type {h.exchange_type} not in the registry")
    if h.minor_version:
        ctx.note("minor-version", "header", "MnVer", 17, f"minor version {h.minor_version} (RFC 7296 s3.1: ignore)")
    ctx.reserved(h.reserved_flags, "header", "Flags", 19)
    return h


def check_order(header: Header, payloads: Sequence[Payload], ctx: ParseContext) -> None:
    """Payload ordering rules: N(COOKIE) first (RFC 7296 s2.6); SK/SKF never together (RFC 7383 s2.5)."""
    cookie = NOTIFY["COOKIE"]
    for i, p in enumerate(payloads):
        if isinstance(p, Notify) and p.type == cookie and i != 0 and header.exchange_type == IKE_SA_INIT:
            ctx.violation("cookie-not-first", "N(COOKIE)", "Next Payload", p.offset,
                          f"N(COOKIE) is payload {i + 1}, RFC 7296 s2.6 requires it first")
    kinds = {p.payload_type for p in payloads} & set(ENCRYPTED)
    if len(kinds) > 1:
        ctx.fail("SKF", "Next Payload", HEADER_SIZE, "SK and SKF in one message")
