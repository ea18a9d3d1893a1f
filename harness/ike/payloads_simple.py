"""The flat IKEv2 payloads: KE, IDi/IDr, CERT, CERTREQ, AUTH, Nonce, N, D, V, EAP (RFC 7296 s3.4-3.12, 3.16)."""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from harness.ike.constants import NOTIFY, PAYLOAD
from harness.ike.payloads_base import ParseContext, Payload

NONCE_MIN, NONCE_MAX = 16, 256  # RFC 7296 s3.9
_ID_ADDRESS_SIZE = {1: 4, 5: 16}  # ID_IPV4_ADDR, ID_IPV6_ADDR (RFC 7296 s3.5)
_DELETE_SPI_SIZE = {1: 0, 2: 4, 3: 4}  # IKE, AH, ESP (RFC 7296 s3.11)


_NOTIFY_NAMES = NOTIFY.by_value  # NOTIFY.name without the call

@dataclass
class KE(Payload):
    """Key Exchange payload (s3.4): Diffie-Hellman Group Num and Key Exchange Data."""

    PAYLOAD_TYPE = 34
    MIN_BODY = 4
    group: int
    data: bytes = b""
    body_reserved: int = 0

    def encode_body(self) -> bytes:
        return struct.pack("!HH", self.group, self.body_reserved) + self.data

    @classmethod
    def decode_body(cls, body: bytes, offset: int, ctx: ParseContext) -> KE:
        group, res = struct.unpack_from("!HH", body)
        ctx.reserved(res, "KE", "RESERVED", offset + 2)
        return cls(group, body[4:], body_reserved=res)


@dataclass
class _Typed(Payload):
    """Body = one type octet, three RESERVED octets, data (ID, AUTH)."""

    MIN_BODY = 4
    kind: int
    data: bytes = b""
    body_reserved: int = 0

    def encode_body(self) -> bytes:
        return struct.pack("!B", self.kind) + self.body_reserved.to_bytes(3, "big") + self.data

    @classmethod
    def decode_body(cls, body: bytes, offset: int, ctx: ParseContext) -> _Typed:
        res = int.from_bytes(body[1:4], "big")
        name = PAYLOAD.name(cls.PAYLOAD_TYPE)
        ctx.reserved(res, name, "RESERVED", offset + 1)
        size = _ID_ADDRESS_SIZE.get(body[0]) if cls.PAYLOAD_TYPE in (35, 36) else None
        if size is not None and len(body) - 4 != size:
            ctx.violation("id-length", name, "Identification Data", offset + 4,
                          f"{len(body) - 4} octets for ID Type {body[0]}, which takes {size} (RFC 7296 s3.5)")
        return cls(body[0], body[4:], body_reserved=res)


@dataclass
class IDi(_Typed):
    """Identification - Initiator (s3.5): kind = ID Type (ID_IPV4_ADDR, ID_FQDN, ...); body_raw is RestOfInitIDPayload."""

    PAYLOAD_TYPE = 35


@dataclass
class IDr(_Typed):
    """Identification - Responder (s3.5): kind = ID Type; body_raw is RestOfRespIDPayload."""

    PAYLOAD_TYPE = 36


@dataclass
class AUTH(_Typed):
    """Authentication payload (s3.8): kind = Auth Method, data = Authentication Data."""

    PAYLOAD_TYPE = 39


@dataclass
class _Encoded(Payload):
    """Body = one encoding octet and data (CERT, CERTREQ)."""

    MIN_BODY = 1
    encoding: int
    data: bytes = b""

    def encode_body(self) -> bytes:
        return bytes([self.encoding]) + self.data

    @classmethod
    def decode_body(cls, body: bytes, offset: int, ctx: ParseContext) -> _Encoded:
        return cls(body[0], body[1:])


@dataclass
class CERT(_Encoded):
    """Certificate payload (s3.6): Cert Encoding and Certificate Data."""

    PAYLOAD_TYPE = 37


@dataclass
class CERTREQ(_Encoded):
    """Certificate Request payload (s3.7): Cert Encoding and Certification Authority (SHA-1 hashes of CA keys)."""

    PAYLOAD_TYPE = 38


@dataclass
class _Opaque(Payload):
    """Body = data only (Nonce, V)."""

    data: bytes = b""

    def encode_body(self) -> bytes:
        return self.data

    @classmethod
    def decode_body(cls, body: bytes, offset: int, ctx: ParseContext) -> _Opaque:
        return cls(body)


@dataclass
class Nonce(_Opaque):
    """Nonce payload (s3.9), Ni or Nr; 16..256 octets (violations are findings)."""

    PAYLOAD_TYPE = 40

    @classmethod
    def decode_body(cls, body: bytes, offset: int, ctx: ParseContext) -> Nonce:
        if not NONCE_MIN <= len(body) <= NONCE_MAX:
            ctx.violation("nonce-length", "Nonce", "Nonce Data", offset,
                          f"{len(body)} octets, RFC 7296 s3.9 requires {NONCE_MIN}..{NONCE_MAX}")
        return cls(body)


@dataclass
class V(_Opaque):
    """Vendor ID payload (s3.12)."""

    PAYLOAD_TYPE = 43


@dataclass
class Notify(Payload):
    """Notify payload (s3.10): Protocol ID, SPI, Notify Message Type (number, or a registry name), data."""

    PAYLOAD_TYPE = 41
    MIN_BODY = 4
    type: int | str
    data: bytes = b""
    protocol: int = 0
    spi: bytes = b""

    def __post_init__(self) -> None:
        if not isinstance(self.type, int):  # NOTIFY.value without the call: numbers pass through, names are looked up
            self.type = NOTIFY[self.type]

    @property
    def type_name(self) -> str:
        """The registry name of the Notify Message Type (or its number)."""
        t = int(self.type)
        name = _NOTIFY_NAMES.get(t)
        return str(t) if name is None else name

    @property
    def is_error(self) -> bool:
        """True for error types (0..16383, RFC 7296 s3.10.1)."""
        return int(self.type) < 16384

    def encode_body(self) -> bytes:
        return struct.pack("!BBH", self.protocol, len(self.spi), int(self.type)) + self.spi + self.data

    @classmethod
    def decode_body(cls, body: bytes, offset: int, ctx: ParseContext) -> Notify:
        proto, spi_size, ntype = struct.unpack_from("!BBH", body)
        if 4 + spi_size > len(body):
            ctx.fail("N", "SPI Size", offset + 1, f"SPI Size {spi_size} exceeds the {len(body) - 4} bytes after the header")
        return cls(ntype, body[4 + spi_size:], proto, body[4:4 + spi_size])


@dataclass
class D(Payload):
    """Delete payload (s3.11): Protocol ID and SPIs (all of spi_size octets; IKE: none)."""

    PAYLOAD_TYPE = 42
    MIN_BODY = 4
    protocol: int
    spis: list[bytes] = field(default_factory=list)
    spi_size: int | None = None

    def __post_init__(self) -> None:
        if self.spi_size is None:
            self.spi_size = len(self.spis[0]) if self.spis else (0 if self.protocol == 1 else 4)

    def encode_body(self) -> bytes:
        return struct.pack("!BBH", self.protocol, self.spi_size or 0, len(self.spis)) + b"".join(self.spis)

    @classmethod
    def decode_body(cls, body: bytes, offset: int, ctx: ParseContext) -> D:
        proto, size, count = struct.unpack_from("!BBH", body)
        if size * count != len(body) - 4:
            ctx.fail("D", "Num of SPIs", offset + 2,
                     f"{count} SPIs of {size} octets need {size * count} bytes, {len(body) - 4} present")
        if _DELETE_SPI_SIZE.get(proto, size) != size:
            ctx.violation("delete-spi-size", "D", "SPI Size", offset + 1,
                          f"{size} for Protocol ID {proto}, RFC 7296 s3.11 requires {_DELETE_SPI_SIZE[proto]}")
        return cls(proto, [body[4 + i * size:4 + (i + 1) * size] for i in range(count)], size)


@dataclass
class EAP(Payload):
    """EAP payload (s3.16): one EAP message (RFC 3748: Code, Identifier, Length, Type, data)."""

    PAYLOAD_TYPE = 48
    MIN_BODY = 4
    message: bytes = b""

    @property
    def code(self) -> int:
        """EAP Code (1 Request, 2 Response, 3 Success, 4 Failure)."""
        return self.message[0]

    def encode_body(self) -> bytes:
        return self.message

    @classmethod
    def decode_body(cls, body: bytes, offset: int, ctx: ParseContext) -> EAP:
        (length,) = struct.unpack_from("!H", body, 2)
        if length != len(body):
            ctx.fail("EAP", "Length", offset + 2, f"EAP Length {length} but the payload holds {len(body)} octets")
        return cls(body)
