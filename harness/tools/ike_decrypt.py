"""Decrypt the SK and SKF payloads (RFC 7296 s3.14, RFC 7383) of IKE messages found in a capture.

``IkeDecryptor(ike_sas).add(index, datagram) -> IkeResult``, one call per IKE datagram
(without the non-ESP marker) in capture order. The IKE SA is matched by (SPIi, SPIr); the
I flag picks SK_ei/SK_ai or SK_er/SK_ar. Statuses (``IKE_STATUSES``):

- "unencrypted": no SK/SKF payload (IKE_SA_INIT, or anything else sent in the clear);
- "decrypted": the ICV verified and the inner payloads parsed; an SKF fragment verifies on its
  own, and the fragment completing its message carries the reassembled inner payloads;
- "failed": ICV failure, bad padding, malformed inner payloads or an undecodable IKE header;
- "unknown_spi": encrypted, but no keys for its IKE SA (not a failure).

Like ESP (harness.tools.capture_decrypt), each datagram is opened on its own, so retransmissions
decrypt again; fragments of one message are collected per (SPIs, Message ID, I, R flags).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from harness.errors import IntegrityError, ParseError
from harness.ike.export import IkeSaKeys
from harness.ike.message import Message, describe_payloads
from harness.ike.payloads import SK, SKF
from harness.ike.sk import IkeSkKeys, Reassembler, decrypt_message

IKE_STATUSES = ("decrypted", "failed", "unknown_spi", "unencrypted")


@dataclass
class IkeResult:
    """What happened to one IKE datagram."""

    index: int
    status: str  # one of IKE_STATUSES
    spi_i: bytes = b""
    spi_r: bytes = b""
    exchange: str = ""
    message_id: int | None = None
    initiator: bool = False  # sent by the original initiator (I flag)
    response: bool = False
    payloads: list[str] = field(default_factory=list)  # inner payloads once decrypted, else the outer ones
    payload_types: list[int] = field(default_factory=list)  # their Payload Type numbers (RFC 7296 s3.2)
    fragment: tuple[int, int] | None = None  # (Fragment Number, Total Fragments) of an SKF datagram
    reassembled_from: list[int] = field(default_factory=list)  # frames of the fragments this one completed
    reason: str = ""
    src: str = ""  # the datagram's source and destination addresses, where the capture said them
    dst: str = ""

    @property
    def direction(self) -> str:
        """Who sent it: "initiator -> responder" or "responder -> initiator" (by the I flag)."""
        return "initiator -> responder" if self.initiator else "responder -> initiator"

    def describe(self) -> str:
        """One line: exchange, request/response, Message ID, direction, payloads, fragment."""
        kind = "response" if self.response else "request"
        frag = f" fragment {self.fragment[0]}/{self.fragment[1]}" if self.fragment else ""
        whole = f" (reassembled from frames {', '.join(map(str, self.reassembled_from))})" if self.reassembled_from else ""
        body = f" [ {' '.join(self.payloads)} ]" if self.payloads else ""
        return f"{self.exchange} {kind} {self.message_id} {self.direction}{frag}{body}{whole}"

    def to_json(self) -> dict[str, Any]:
        """This result as JSON."""
        out: dict[str, Any] = {"index": self.index, "status": self.status}
        if self.spi_i:
            out.update(spi_i=self.spi_i.hex(), spi_r=self.spi_r.hex())
        if self.exchange:
            out.update(exchange=self.exchange, message_id=self.message_id, response=self.response,
                       direction=self.direction, payloads=self.payloads, payload_types=self.payload_types)
        if self.fragment:
            out["fragment"] = list(self.fragment)
        if self.reassembled_from:
            out["reassembled_from"] = self.reassembled_from
        if self.reason:
            out["reason"] = self.reason
        return out


class IkeDecryptor:
    """Opens IKE datagrams with the keys of the IKE SAs given; keeps SKF fragments until their message is complete."""

    def __init__(self, ike_sas: Iterable[IkeSaKeys]) -> None:
        self.keys = {(k.spi_i, k.spi_r): IkeSkKeys.from_ike_sa_keys(k) for k in ike_sas}
        self.reassembler = Reassembler()
        self._frames: dict[tuple[bytes, bytes, int, bool, bool], list[int]] = {}

    def add(self, index: int, datagram: bytes) -> IkeResult:
        """Classify and, when keys are known, decrypt one IKE datagram (frame number index)."""
        res = IkeResult(index, "failed")
        try:
            message = Message.decode(datagram)
        except ParseError as e:
            res.reason = str(e)
            return res
        h = message.header
        res.spi_i, res.spi_r, res.exchange, res.message_id = h.spi_i, h.spi_r, h.exchange_name, h.message_id
        res.initiator, res.response = h.initiator, h.response
        enc = message.payloads[-1] if message.payloads else None
        res.payloads = [describe_payloads([p]) for p in message.payloads]
        res.payload_types = [p.payload_type for p in message.payloads]
        if not isinstance(enc, (SK, SKF)):
            res.status = "unencrypted"
            return res
        if isinstance(enc, SKF):
            res.fragment = (enc.fragment_number, enc.total_fragments)
        keys = self.keys.get((h.spi_i, h.spi_r))
        if keys is None:
            res.status = "unknown_spi"
            return res
        key = (h.spi_i, h.spi_r, h.message_id, h.initiator, h.response)
        try:
            opened = decrypt_message(datagram, keys, self.reassembler)
        except IntegrityError as e:
            res.reason = f"bad ICV: {e}"
            return res
        except ParseError as e:  # IkeParseError: bad padding, sizes or inner payloads
            res.reason = str(e)
            if key not in self.reassembler.pending:
                self._frames.pop(key, None)  # a reassembled message whose inner payloads did not parse
            return res
        res.status = "decrypted"
        if isinstance(enc, SKF):
            frames = self._frames.setdefault(key, [])
            frames.append(index)
            if opened is None:
                res.payloads, res.payload_types = [], []  # reported with the frame that completes the message
                return res
            del self._frames[key]
            res.reassembled_from = sorted(frames)
        inner = (opened.inner if opened is not None else None) or []
        res.payloads = [describe_payloads([p]) for p in inner]
        res.payload_types = [p.payload_type for p in inner]
        return res

    def incomplete(self) -> list[tuple[str, int, list[int]]]:
        """Fragmented messages still missing fragments: (SPIi/SPIr hex, Message ID, missing fragment numbers)."""
        return [(f"{k[0].hex()}/{k[1].hex()}", k[2], m) for k, m in self.reassembler.missing().items()]
