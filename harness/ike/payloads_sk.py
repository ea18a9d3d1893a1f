"""Encrypted payloads SK (RFC 7296 s3.14) and SKF (RFC 7383 s2.5) as carried on the wire, and unknown payloads.

Their bodies stay opaque here (IV, ciphertext, ICV); harness.ike.sk protects and opens them.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from harness.ike.payloads_base import ParseContext, Payload


@dataclass
class SK(Payload):
    """Encrypted and Authenticated payload: first_payload is the type of the first inner payload."""

    PAYLOAD_TYPE = 46
    first_payload: int
    data: bytes = b""  # IV || ciphertext (inner payloads, padding, pad length) || ICV

    def next_field(self, following: int) -> int:
        return self.first_payload

    def encode_body(self) -> bytes:
        return self.data

    @classmethod
    def decode_body(cls, body: bytes, offset: int, ctx: ParseContext) -> SK:
        return cls(0, body)


@dataclass
class SKF(Payload):
    """Encrypted Fragment payload (RFC 7383 s2.5): fragment number / total; first_payload only in fragment 1."""

    PAYLOAD_TYPE = 53
    MIN_BODY = 4
    first_payload: int
    fragment_number: int
    total_fragments: int
    data: bytes = b""

    def next_field(self, following: int) -> int:
        return self.first_payload

    def encode_body(self) -> bytes:
        return struct.pack("!HH", self.fragment_number, self.total_fragments) + self.data

    @classmethod
    def decode_body(cls, body: bytes, offset: int, ctx: ParseContext) -> SKF:
        num, total = struct.unpack_from("!HH", body)
        if total == 0:
            ctx.fail("SKF", "Total Fragments", offset + 2, "zero (RFC 7383 s2.5)")
        if not 1 <= num <= total:
            ctx.fail("SKF", "Fragment Number", offset, f"{num}, must be 1..{total} (RFC 7383 s2.6)")
        return cls(0, num, total, body[4:])


@dataclass
class UnknownPayload(Payload):
    """A payload of a type this codec does not parse (received without the critical bit, or built to bend)."""

    type: int
    body: bytes = b""

    @property
    def payload_type(self) -> int:
        return self.type

    def encode_body(self) -> bytes:
        return self.body
