"""IKEv2 payloads (RFC 7296 s3.2-3.16, RFC 7383 SKF) and payload chains: the import point for every payload class.

Classes: SA (Proposal, Transform, Attribute), KE, IDi, IDr, CERT, CERTREQ, AUTH, Nonce (Ni/Nr),
Notify (N), D (Delete), V (Vendor ID), TSi, TSr (Selector, RawSelector), SK, CP
(ConfigAttribute), EAP, SKF, UnknownPayload.
`encode_chain(payloads, bends) -> (first type, bytes)` and
`decode_chain(data, first, ctx, base, where) -> list[Payload]` link them by Next Payload.
"""
from __future__ import annotations

import struct
from typing import Sequence

from harness.ike import bend as _bend
from harness.ike.bend import Bend
from harness.ike.constants import PAYLOAD
from harness.ike.payloads_base import GENERIC_HEADER, Finding, ParseContext, Payload
from harness.ike.payloads_sa import KEY_LENGTH, SA, Attribute, Proposal, Transform
from harness.ike.payloads_simple import AUTH, CERT, CERTREQ, EAP, IDi, IDr, KE, D, Nonce, Notify, V
from harness.ike.payloads_sk import SK, SKF, UnknownPayload
from harness.ike.payloads_ts import CP, ConfigAttribute, RawSelector, Selector, TSi, TSr

__all__ = ["Payload", "Finding", "ParseContext", "SA", "Proposal", "Transform", "Attribute", "KEY_LENGTH", "KE",
           "IDi", "IDr", "CERT", "CERTREQ", "AUTH", "Nonce", "Notify", "D", "V", "TSi", "TSr", "Selector",
           "RawSelector", "SK", "CP", "ConfigAttribute", "EAP", "SKF", "UnknownPayload", "PAYLOAD_CLASSES",
           "encode_chain", "encode_parts", "decode_chain", "ENCRYPTED"]

PAYLOAD_CLASSES: dict[int, type[Payload]] = {c.PAYLOAD_TYPE: c for c in (
    SA, KE, IDi, IDr, CERT, CERTREQ, AUTH, Nonce, Notify, D, V, TSi, TSr, SK, CP, EAP, SKF)}
ENCRYPTED = (SK.PAYLOAD_TYPE, SKF.PAYLOAD_TYPE)
_GENERIC = struct.Struct("!BBH")  # Next Payload, C + RESERVED, Payload Length (RFC 7296 s3.2)


def _unknown(ptype: int, data: bytes, critical: bool) -> UnknownPayload:
    return UnknownPayload(ptype, data, critical=critical)


def encode_parts(payloads: Sequence[Payload], bends: Sequence[Bend] = (),
                 inner: bool = False) -> tuple[int, list[Payload], list[bytes]]:
    """(first type, the payloads after list bends, each one's encoding after payload bends)."""
    items = _bend.apply_list(payloads, _bend.select(bends, "list", inner), _unknown) if bends else list(payloads)
    following = [p.payload_type for p in items[1:]]
    following.append(0)
    encoded = [p.encode(nxt) for p, nxt in zip(items, following)]
    if bends:
        encoded = _bend.apply_payload(encoded, _bend.select(bends, "payload", inner))
    return (items[0].payload_type if items else 0), items, encoded


def encode_chain(payloads: Sequence[Payload], bends: Sequence[Bend] = (), inner: bool = False) -> tuple[int, bytes]:
    """(Next Payload value announcing the chain, the chain's bytes), with the list/payload bends for this chain."""
    first, _, parts = encode_parts(payloads, bends, inner)
    return first, b"".join(parts)


def decode_chain(data: bytes, first: int, ctx: ParseContext, base: int = 0, where: str = "") -> list[Payload]:
    """Every payload of a chain starting with type first; base = offset of data in its datagram, where = path prefix."""
    out: list[Payload] = []
    off, nxt, size = 0, first, len(data)
    classes, unpack_from, encrypted = PAYLOAD_CLASSES, _GENERIC.unpack_from, ENCRYPTED  # locals: this loop is hot
    while nxt != 0:
        if size - off < GENERIC_HEADER:
            ctx.fail(where + PAYLOAD.name(nxt), "generic payload header", base + off,
                     f"{size - off} bytes left, a payload needs {GENERIC_HEADER}")
        np, flags, length = unpack_from(data, off)
        end = off + length
        if length < GENERIC_HEADER or end > size:
            ctx.fail(where + PAYLOAD.name(nxt), "Payload Length", base + off + 2, f"{length}, but {size - off} bytes remain")
        critical, reserved = flags >= 0x80, flags & 0x7F
        if reserved:
            ctx.reserved(reserved, where + PAYLOAD.name(nxt), "RESERVED", base + off + 1)
        body = data[off + GENERIC_HEADER:end]
        cls = classes.get(nxt)
        if cls is None:
            name = where + PAYLOAD.name(nxt)
            if critical:
                ctx.fail(name, "Critical", base + off + 1, f"unknown payload type {nxt} with the critical bit set",
                         notify="UNSUPPORTED_CRITICAL_PAYLOAD", data=bytes([nxt]))
            ctx.note("unknown-payload-skipped", name, "Next Payload", base + off,
                     f"unknown payload type {nxt} without the critical bit: skipped (RFC 7296 s2.5)")
            p: Payload = UnknownPayload(nxt, body)
        else:
            if len(body) < cls.MIN_BODY:
                name = where + PAYLOAD.name(nxt)
                ctx.fail(name, "Payload Length", base + off + 2,
                         f"{length}, a {name} payload needs at least {GENERIC_HEADER + cls.MIN_BODY}")
            p = cls.decode_body(body, base + off + GENERIC_HEADER, ctx)
        p.critical, p.reserved, p.raw, p.offset = critical, reserved, data[off:end], base + off
        out.append(p)
        off = end
        if nxt in encrypted:
            name = where + PAYLOAD.name(nxt)
            p.first_payload = np  # type: ignore[attr-defined]
            if isinstance(p, SKF) and p.fragment_number > 1 and np:
                ctx.violation("skf-next-payload", name, "Next Payload", base + off - length,
                              f"{np} in fragment {p.fragment_number}; RFC 7383 s2.5 sets it only in fragment 1")
            if off != size:
                ctx.fail(name, "Payload Length", base + off - length + 2,
                         f"{size - off} bytes follow the encrypted payload; it must be last (RFC 7296 s3.14)")
            return out
        nxt = np
    if off != size:
        ctx.fail(where + "chain", "Next Payload", base + off, f"{size - off} bytes follow the last payload")
    return out
