"""The generic IKEv2 payload (RFC 7296 s3.2), parse findings, and the strict/lenient parse context.

Every payload class derives from `Payload`: `encode_body()` gives the body after the 4-byte
generic header, `decode_body(body, offset, ctx)` parses one (offset = absolute offset of the
body in the datagram or decrypted chain, for error messages). Decoded payloads keep `raw`
(their exact bytes, generic header included) and `offset`; `body_raw` is what AUTH needs
(e.g. RestOfInitIDPayload of IDi, RFC 7296 s2.15).

Finding rules (lenient mode records them; strict mode raises IkeParseError for the violations):
violations -- reserved-nonzero, nonce-length, attribute-format (Key Length as TLV), cookie-not-first,
id-length (ID_IPV4/IPV6_ADDR), delete-spi-size, skf-next-payload; notes (never raise) --
unknown-payload-skipped, minor-version, unknown-exchange-type.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import ClassVar, NoReturn

from harness.errors import ConfigError, IkeParseError
from harness.ike.constants import PAYLOAD

GENERIC_HEADER = 4
_GENERIC = struct.Struct("!BBH")  # Next Payload, C bit and RESERVED, Payload Length


@dataclass(frozen=True)
class Finding:
    """A conformance violation the decoder saw but (in lenient mode) tolerated: rule, where, what."""

    rule: str  # e.g. "reserved-nonzero", "nonce-length", "cookie-not-first", "unknown-payload-skipped"
    payload: str
    field: str
    offset: int
    detail: str


class ParseContext:
    """Decoder state: strict (violations raise IkeParseError) or lenient (recorded as findings)."""

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict
        self.findings: list[Finding] = []

    def fail(self, payload: str, field: str, offset: int, reason: str,
             notify: str = "INVALID_SYNTAX", data: bytes = b"") -> NoReturn:
        """Raise the typed error for malformed input (always, whatever the mode)."""
        raise IkeParseError(payload, field, offset, reason, notify, data)

    def violation(self, rule: str, payload: str, field: str, offset: int, detail: str) -> None:
        """A rule the RFC tells receivers to tolerate: recorded; raises INVALID_SYNTAX in strict mode."""
        self.findings.append(Finding(rule, payload, field, offset, detail))
        if self.strict:
            self.fail(payload, field, offset, f"{detail} (strict mode, rule {rule})")

    def note(self, rule: str, payload: str, field: str, offset: int, detail: str) -> None:
        """Something legal but worth reporting (never raises)."""
        self.findings.append(Finding(rule, payload, field, offset, detail))

    def need(self, data: bytes, size: int, payload: str, field: str, offset: int) -> None:
        """Fail unless data holds at least size bytes."""
        if len(data) < size:
            self.fail(payload, field, offset, f"{len(data)} bytes, at least {size} needed")

    def reserved(self, value: int, payload: str, field: str, offset: int) -> None:
        """Record a nonzero RESERVED field (RFC 7296 s3.2: MUST be sent as zero, MUST be ignored on receipt)."""
        if value:
            self.violation("reserved-nonzero", payload, field, offset, f"RESERVED is {value:#x}, must be zero")


@dataclass
class Payload:
    """One IKEv2 payload; subclasses set PAYLOAD_TYPE and MIN_BODY and define the body codec."""

    PAYLOAD_TYPE: ClassVar[int] = 0
    MIN_BODY: ClassVar[int] = 0
    critical: bool = field(default=False, kw_only=True)
    reserved: int = field(default=0, kw_only=True)  # the 7 RESERVED bits after the critical bit
    raw: bytes = field(default=b"", kw_only=True, compare=False, repr=False)
    offset: int = field(default=-1, kw_only=True, compare=False, repr=False)

    @property
    def payload_type(self) -> int:
        """The Payload Type number (RFC 7296 s3.2) this payload is announced with."""
        return self.PAYLOAD_TYPE

    @property
    def name(self) -> str:
        """The RFC notation of this payload type (SA, KE, IDi, N, SK, ...)."""
        return PAYLOAD.name(self.payload_type)

    def next_field(self, following: int) -> int:
        """The Next Payload value to write in this payload's header (SK/SKF: their first inner payload)."""
        return following

    def encode_body(self) -> bytes:
        """The payload body (after the generic header)."""
        raise NotImplementedError(type(self).__name__)

    @classmethod
    def decode_body(cls, body: bytes, offset: int, ctx: ParseContext) -> Payload:
        """Parse a body of this payload type; offset is where the body starts, for error messages."""
        raise NotImplementedError(cls.__name__)

    def encode(self, following: int = 0) -> bytes:
        """Generic header (Next Payload = following, C bit, RESERVED, length) plus body."""
        try:
            body = self.encode_body()
            flags = (0x80 if self.critical else 0) | (self.reserved & 0x7F)
            return _GENERIC.pack(self.next_field(following), flags, GENERIC_HEADER + len(body)) + body
        except (struct.error, OverflowError) as e:
            raise ConfigError(f"{self.name} payload cannot be encoded: a field is out of range ({e})") from None

    @property
    def body_raw(self) -> bytes:
        """The body as received (decoded payloads) or as it would be sent (built ones)."""
        return self.raw[GENERIC_HEADER:] if self.raw else self.encode_body()
