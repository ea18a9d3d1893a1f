"""Fault injection for the tester side (BoGo-style): `Bend`s bend the encoding of a message on purpose.

A Bend is data (``Bend.from_dict({"op": "payload_length", "index": 1, "delta": 4})``); the
encoder applies each at its stage:

- list (before encoding a payload chain): strip, duplicate, swap(value=j), move(value=position),
  insert_unknown(value=type, critical, data) -- index may be negative (Python indexing);
- payload (on one encoded payload, header included): payload_length (value or delta),
  next_payload (value), payload_reserved (value, 7 bits), payload_critical (value 1 set / 0 clear),
  poke (offset, value: one byte inside the payload);
- header (on the encoded 28-byte IKE header): header_length (value or delta), message_id (value or delta),
  major_version, minor_version, exchange_type, header_next_payload, header_flags (value ORed in; delta XORed);
- datagram (last, after SK protection): truncate (value bytes cut from the end), append (data);
- sk (harness.ike.sk only): sk_pad_length (value written as Pad Length), sk_extra_padding (value
  more padding octets), sk_icv_flip (flip the low bit of ICV byte `index`), sk_iv (data: use this IV).

`inner=True` aims list/payload bends at the chain inside SK/SKF instead of the outer one.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, fields
from typing import Any, Iterable, Sequence, TypeVar

from harness.errors import ConfigError

STAGES = {
    "strip": "list", "duplicate": "list", "swap": "list", "move": "list", "insert_unknown": "list",
    "payload_length": "payload", "next_payload": "payload", "payload_reserved": "payload",
    "payload_critical": "payload", "poke": "payload",
    "header_length": "header", "message_id": "header", "major_version": "header", "minor_version": "header",
    "exchange_type": "header", "header_next_payload": "header", "header_flags": "header",
    "truncate": "datagram", "append": "datagram",
    "sk_pad_length": "sk", "sk_extra_padding": "sk", "sk_icv_flip": "sk", "sk_iv": "sk",
}

T = TypeVar("T")


@dataclass(frozen=True)
class Bend:
    """One deliberate deviation from RFC 7296 encoding; see the module docstring for each op."""

    op: str
    index: int = 0
    value: int | None = None
    delta: int = 0
    offset: int = 0
    critical: bool = False
    data: bytes = b""
    inner: bool = False

    def __post_init__(self) -> None:
        if self.op not in STAGES:
            raise ConfigError(f"bend: unknown op {self.op!r}; known: {', '.join(sorted(STAGES))}")

    @property
    def stage(self) -> str:
        """list, payload, header, datagram or sk."""
        return STAGES[self.op]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Bend:
        """A Bend from JSON-like data (data as hex); ConfigError naming an unknown key."""
        names = {f.name for f in fields(cls)}
        extra = set(d) - names
        if extra:
            raise ConfigError(f"bend {d!r}: unknown keys {sorted(extra)}")
        kw = dict(d)
        if "data" in kw:
            try:
                kw["data"] = bytes.fromhex(kw["data"])
            except (TypeError, ValueError):
                raise ConfigError(f"bend {d!r}: key 'data' is not hex") from None
        return cls(**kw)


def select(bends: Iterable[Bend], stage: str, inner: bool | None = None) -> list[Bend]:
    """The bends of one stage (and, for list/payload, of the outer or inner chain)."""
    if not bends:
        return []
    return [b for b in bends if b.stage == stage and (inner is None or b.inner == inner)]


def _set16(data: bytearray, at: int, b: Bend) -> None:
    old = struct.unpack_from("!H", data, at)[0]
    struct.pack_into("!H", data, at, (b.value if b.value is not None else old + b.delta) & 0xFFFF)


def apply_list(items: Sequence[T], bends: Iterable[Bend], unknown: Any) -> list[T]:
    """The payload list after strip/duplicate/swap/move/insert_unknown (unknown builds the inserted payload)."""
    out = list(items)
    for b in bends:
        try:
            _list_op(out, b, unknown)
        except IndexError:
            raise ConfigError(f"bend {b.op}: index {b.index} (value {b.value}) outside the {len(out)} payloads") from None
    return out


def _list_op(out: list[Any], b: Bend, unknown: Any) -> None:
    i = b.index
    if b.op == "strip":
        del out[i]
    elif b.op == "duplicate":
        item = out[i]  # IndexError (a typed ConfigError above) before i % len(out) can divide by zero
        out.insert(i % len(out) + 1, item)
    elif b.op == "swap":
        j = b.value or 0
        out[i], out[j] = out[j], out[i]
    elif b.op == "move":
        item = out.pop(i)
        out.insert(b.value or 0, item)
    elif b.op == "insert_unknown":
        at = i if i >= 0 else len(out) + 1 + i
        out.insert(at, unknown(b.value if b.value is not None else 200, b.data, b.critical))


def apply_payload(encoded: list[bytes], bends: Iterable[Bend]) -> list[bytes]:
    """The encoded payloads after payload_length/next_payload/payload_reserved/payload_critical/poke."""
    out = [bytearray(p) for p in encoded]
    for b in bends:
        if not -len(out) <= b.index < len(out) or not -len(out[b.index]) <= b.offset < len(out[b.index]):
            raise ConfigError(f"bend {b.op}: index {b.index}/offset {b.offset} outside the encoded payloads")
        p = out[b.index]
        if b.op == "payload_length":
            _set16(p, 2, b)
        elif b.op == "next_payload":
            p[0] = (b.value or 0) & 0xFF
        elif b.op == "payload_reserved":
            p[1] = (p[1] & 0x80) | ((b.value or 0) & 0x7F)
        elif b.op == "payload_critical":
            p[1] = (p[1] | 0x80) if b.value is None or b.value else (p[1] & 0x7F)
        elif b.op == "poke":
            p[b.offset] = (b.value or 0) & 0xFF
    return [bytes(p) for p in out]


def apply_header(header: bytes, bends: Iterable[Bend]) -> bytes:
    """The 28-byte IKE header after the header-stage bends."""
    h = bytearray(header)
    for b in bends:
        v = b.value
        if b.op == "header_length":
            old = struct.unpack_from("!I", h, 24)[0]
            struct.pack_into("!I", h, 24, (v if v is not None else old + b.delta) & 0xFFFFFFFF)
        elif b.op == "message_id":
            old = struct.unpack_from("!I", h, 20)[0]
            struct.pack_into("!I", h, 20, (v if v is not None else old + b.delta) & 0xFFFFFFFF)
        elif b.op == "major_version":
            h[17] = ((v or 0) & 0xF) << 4 | (h[17] & 0xF)
        elif b.op == "minor_version":
            h[17] = (h[17] & 0xF0) | ((v or 0) & 0xF)
        elif b.op == "exchange_type":
            h[18] = (v or 0) & 0xFF
        elif b.op == "header_next_payload":
            h[16] = (v or 0) & 0xFF
        elif b.op == "header_flags":
            h[19] = ((h[19] | (v or 0)) ^ b.delta) & 0xFF
    return bytes(h)


def apply_datagram(datagram: bytes, bends: Iterable[Bend]) -> bytes:
    """The datagram after truncate/append."""
    for b in bends:
        if b.op == "truncate":
            datagram = datagram[: max(0, len(datagram) - (b.value or 0))]
        elif b.op == "append":
            datagram += b.data
    return datagram
