"""SK (RFC 7296 s3.14) and SKF (RFC 7383) protection: encrypt, authenticate, fragment, open, reassemble.

Layout of the protected body: IV || ciphertext(inner payloads || Padding || Pad Length) || ICV.
Non-AEAD: ICV = INTEG(SK_a, datagram from the IKE header through the ciphertext).
AEAD (RFC 5282 s5.1, RFC 7634 s3): AAD = the datagram from the IKE header through the generic
header of SK (for SKF: through Fragment Number/Total Fragments), ICV = the AEAD tag.

Public API:
- ``SkKeys.of(encr, sk_e, integ=None, sk_a=b"")`` one direction's keys (encr/integ: IANA number or name;
  sk_e = key || salt as harness.crypto expects); ``IkeSkKeys(encr, integ, sk_ei, sk_ai, sk_er, sk_ar)``
  both directions, ``.for_sender(initiator)`` picks SK_ei/SK_ai when the sender is the original initiator;
  ``IkeSkKeys.from_ike_sa_keys(harness.ike.export.IkeSaKeys)`` for keys files.
- ``protect(header, inner, keys, outer=(), bends=(), rng=os.urandom) -> bytes`` one SK message.
- ``fragment(header, inner, keys, max_datagram, bends=(), rng=os.urandom) -> list[bytes]`` SKF messages
  (RFC 7383 s2.5: every fragment <= max_datagram octets, each individually protected).
- ``open_encrypted(message, keys) -> bytes`` the inner chain bytes of a decoded SK/SKF message
  (IntegrityError on a bad ICV, IkeParseError on bad sizes or padding).
- ``decrypt_message(datagram, keys, reassembler=None, strict=False) -> Decrypted | None``
  for captures and the state machine: keys is SkKeys or IkeSkKeys (picked by the I flag);
  an SKF fragment goes to the reassembler (None until complete). ``Decrypted(message, inner,
  plaintext, fragment)``: inner payload offsets count from the start of the plaintext.
- ``Reassembler().add(message, keys) -> Decrypted | None``; ``.missing()`` lists incomplete messages.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from harness.crypto import Encr, Integ, encr as encr_lookup, integ as integ_lookup
from harness.errors import ConfigError, IkeParseError, IntegrityError, KeyMaterialError
from harness.ike import bend as _bend
from harness.ike.bend import Bend
from harness.ike.message import HEADER_SIZE, Header, Message, encode_header
from harness.ike.payloads import SK, SKF, ParseContext, Payload, decode_chain, encode_chain, encode_parts

Rng = Callable[[int], bytes]
SKF_HEADER = 8  # generic header + Fragment Number + Total Fragments


@dataclass(frozen=True)
class SkKeys:
    """The SK keys of one direction: encryption transform and SK_e, integrity transform and SK_a (None for AEAD)."""

    encr: Encr
    sk_e: bytes
    integ: Integ | None = None
    sk_a: bytes = b""

    def __post_init__(self) -> None:
        if self.encr.aead and self.integ is not None:
            raise ConfigError(f"SK keys: {self.encr.name} is AEAD and takes no integrity transform")
        if not self.encr.aead and self.integ is None:
            raise ConfigError(f"SK keys: {self.encr.name} needs an integrity transform")
        if self.integ is not None and self.integ.iv_size:
            raise ConfigError(f"SK keys: {self.integ.name} needs a per-packet IV and is not defined for IKEv2 SK")
        sizes = [self.encr.key_size(b) for b in self.encr.key_bits] or [self.encr.key_size()]
        if len(self.sk_e) not in sizes:
            raise KeyMaterialError(f"SK keys: SK_e is {len(self.sk_e)} octets, {self.encr.name} takes {sizes} "
                                   "(key and salt)")
        if self.integ is not None and len(self.sk_a) != self.integ.key_size:
            raise KeyMaterialError(f"SK keys: SK_a is {len(self.sk_a)} octets, {self.integ.name} takes "
                                   f"{self.integ.key_size}")

    @classmethod
    def of(cls, encr: int | str, sk_e: bytes, integ: int | str | None = None, sk_a: bytes = b"") -> SkKeys:
        """Keys from transform numbers or names."""
        return cls(encr_lookup(encr), sk_e, integ_lookup(integ) if integ is not None else None, sk_a)

    @property
    def icv_size(self) -> int:
        """Octets of ICV after the ciphertext."""
        return self.encr.icv_size if self.encr.aead else self.integ.icv_size  # type: ignore[union-attr]


@dataclass(frozen=True)
class IkeSkKeys:
    """Both directions' SK keys of an IKE SA (RFC 7296 s2.14: SK_ei/SK_ai protect what the initiator sends)."""

    encr: int | str
    integ: int | str | None
    sk_ei: bytes
    sk_ai: bytes
    sk_er: bytes
    sk_ar: bytes

    @classmethod
    def from_ike_sa_keys(cls, k: Any) -> IkeSkKeys:
        """From a harness.ike.export.IkeSaKeys (the "ike_sas" keys-file entry): names and SK_* as there."""
        return cls(k.encryption, k.integrity, k.sk_ei, k.sk_ai, k.sk_er, k.sk_ar)

    def for_sender(self, initiator: bool) -> SkKeys:
        """The keys protecting messages sent by the original initiator (True) or responder (False)."""
        return SkKeys.of(self.encr, self.sk_ei if initiator else self.sk_er, self.integ,
                         self.sk_ai if initiator else self.sk_ar)


@dataclass
class Decrypted:
    """An opened message: the outer message, the inner payloads (None: an SKF fragment alone), the plaintext."""

    message: Message
    inner: list[Payload] | None
    plaintext: bytes = b""
    fragment: tuple[int, int] | None = None  # (Fragment Number, Total Fragments) of a lone SKF
    findings: list = field(default_factory=list)


def _pad(keys: SkKeys, content: bytes, bends: Sequence[Bend]) -> bytes:
    bs = max(keys.encr.block_size, 1)
    extra = sum(b.value or 0 for b in bends if b.op == "sk_extra_padding")
    pad = (-(len(content) + 1)) % bs + extra * bs
    pad_len = next((b.value for b in bends if b.op == "sk_pad_length" and b.value is not None), pad)
    return content + bytes(pad) + bytes([pad_len & 0xFF])


def _seal(prefix: bytes, plaintext: bytes, keys: SkKeys, iv: bytes, bends: Sequence[Bend]) -> bytes:
    """IV || ciphertext || ICV for a body whose preceding datagram bytes are prefix."""
    if keys.encr.aead:
        body = iv + keys.encr.encrypt(keys.sk_e, iv, plaintext, prefix)
    else:
        ct = keys.encr.encrypt(keys.sk_e, iv, plaintext)
        body = iv + ct + keys.integ.icv(keys.sk_a, prefix + iv + ct)  # type: ignore[union-attr]
    flips = [b for b in bends if b.op == "sk_icv_flip"]
    if flips:
        out = bytearray(body)
        for b in flips:
            out[len(out) - keys.icv_size + (b.index % keys.icv_size)] ^= 0x01
        body = bytes(out)
    return body


def _iv(keys: SkKeys, bends: Sequence[Bend], rng: Rng) -> bytes:
    return next((b.data for b in bends if b.op == "sk_iv"), None) or rng(keys.encr.iv_size)


def _assemble(header: Header, outer: Sequence[Payload], enc: SK | SKF, plaintext: bytes, keys: SkKeys,
              bends: Sequence[Bend], rng: Rng) -> bytes:
    """The datagram with enc's body sealed in place, header/payload/datagram bends applied before/after as due."""
    iv = _iv(keys, bends, rng)
    body_size = len(iv) + len(plaintext) + keys.icv_size
    enc.data = bytes(body_size)
    first, items, parts = encode_parts(list(outer) + [enc], bends, inner=False)
    head = encode_header(header, first, parts, bends)
    at = next(i for i, p in enumerate(items) if p is enc)
    start = len(head) + sum(map(len, parts[:at])) + (SKF_HEADER if isinstance(enc, SKF) else 4)
    before = head + b"".join(parts)
    sealed = _seal(before[:start], plaintext, keys, iv, bends)
    enc.data = sealed
    datagram = before[:start] + sealed + before[start + body_size:]
    return _bend.apply_datagram(datagram, _bend.select(bends, "datagram"))


def protect(header: Header, inner: Sequence[Payload], keys: SkKeys, outer: Sequence[Payload] = (),
            bends: Sequence[Bend] = (), rng: Rng = os.urandom) -> bytes:
    """One SK-protected datagram carrying inner (after any unencrypted outer payloads)."""
    first, chain = encode_chain(inner, bends, inner=True)
    sk_bends = _bend.select(bends, "sk")
    return _assemble(header, outer, SK(first), _pad(keys, chain, sk_bends), keys, bends, rng)


def fragment_capacity(keys: SkKeys, max_datagram: int) -> int:
    """Octets of inner chain one SKF datagram of at most max_datagram octets can carry."""
    bs = max(keys.encr.block_size, 1)
    room = max_datagram - HEADER_SIZE - SKF_HEADER - keys.encr.iv_size - keys.icv_size
    return (room // bs) * bs - 1


def fragment(header: Header, inner: Sequence[Payload], keys: SkKeys, max_datagram: int,
             bends: Sequence[Bend] = (), rng: Rng = os.urandom) -> list[bytes]:
    """The SKF datagrams (RFC 7383 s2.5) carrying inner, each at most max_datagram octets and protected alone."""
    cap = fragment_capacity(keys, max_datagram)
    if cap < 1:
        raise ConfigError(f"SKF: {max_datagram} octets leave no room for content after headers, IV and ICV")
    first, chain = encode_chain(inner, bends, inner=True)
    chunks = [chain[i:i + cap] for i in range(0, len(chain), cap)] or [b""]
    if len(chunks) > 0xFFFF:
        raise ConfigError(f"SKF: {len(chunks)} fragments exceed the 65535 RFC 7383 allows")
    sk_bends = _bend.select(bends, "sk")
    return [_assemble(header, (), SKF(first if n == 1 else 0, n, len(chunks)), _pad(keys, c, sk_bends), keys,
                      bends, rng) for n, c in enumerate(chunks, 1)]


def open_encrypted(message: Message, keys: SkKeys) -> bytes:
    """The inner chain bytes of a decoded SK or SKF message: ICV checked, decrypted, padding removed."""
    enc = message.payloads[-1] if message.payloads else None
    if not isinstance(enc, (SK, SKF)):
        raise IkeParseError("message", "Next Payload", HEADER_SIZE, "no SK or SKF payload to open")
    name = enc.name
    start = enc.offset + (SKF_HEADER if isinstance(enc, SKF) else 4)
    raw = message.raw
    body = raw[start:enc.offset + len(enc.raw)]
    iv_size, icv = keys.encr.iv_size, keys.icv_size
    if len(body) < iv_size + icv + max(keys.encr.block_size, 1):
        raise IkeParseError(name, "Payload Length", enc.offset + 2,
                            f"{len(body)} octets cannot hold IV ({iv_size}), a block and ICV ({icv})")
    iv, ct = body[:iv_size], body[iv_size:]
    if keys.encr.aead:
        plaintext = keys.encr.decrypt(keys.sk_e, iv, ct, raw[:start])
    else:
        ct, tag = ct[:-icv], ct[-icv:]
        if not keys.integ.verify(keys.sk_a, raw[:start] + iv + ct, tag):  # type: ignore[union-attr]
            raise IntegrityError(f"{name}: ICV does not verify")
        if len(ct) % max(keys.encr.block_size, 1):
            raise IkeParseError(name, "Encrypted IKE Payloads", start + iv_size,
                                f"{len(ct)} octets, not a multiple of the {keys.encr.block_size}-octet block")
        try:
            plaintext = keys.encr.decrypt(keys.sk_e, iv, ct)
        except KeyMaterialError as e:
            raise IkeParseError(name, "Encrypted IKE Payloads", start + iv_size, str(e)) from None
    pad_len = plaintext[-1] if plaintext else 0
    if not plaintext or pad_len + 1 > len(plaintext):
        raise IkeParseError(name, "Pad Length", start + iv_size + len(plaintext) - 1,
                            f"Pad Length {pad_len} exceeds the {len(plaintext)}-octet plaintext")
    return plaintext[:len(plaintext) - pad_len - 1]


def _keys_for(message: Message, keys: SkKeys | IkeSkKeys) -> SkKeys:
    return keys.for_sender(message.header.initiator) if isinstance(keys, IkeSkKeys) else keys


def decrypt_message(datagram: bytes, keys: SkKeys | IkeSkKeys, reassembler: Reassembler | None = None,
                    strict: bool = False) -> Decrypted | None:
    """Decode and open one datagram (no non-ESP marker); None while an SKF message is being reassembled."""
    message = Message.decode(datagram, strict)
    enc = message.payloads[-1] if message.payloads else None
    if isinstance(enc, SKF):
        if reassembler is not None:
            return reassembler.add(message, keys, strict)
        return Decrypted(message, None, open_encrypted(message, _keys_for(message, keys)),
                         (enc.fragment_number, enc.total_fragments), list(message.findings))
    if not isinstance(enc, SK):
        return Decrypted(message, None, b"", None, list(message.findings))
    plaintext = open_encrypted(message, _keys_for(message, keys))
    ctx = ParseContext(strict)
    inner = decode_chain(plaintext, enc.first_payload, ctx, 0, "SK/")
    return Decrypted(message, inner, plaintext, None, list(message.findings) + ctx.findings)


@dataclass
class _Pending:
    total: int
    first_payload: int = 0
    parts: dict[int, bytes] = field(default_factory=dict)
    first_message: Message | None = None


class Reassembler:
    """Collects SKF fragments per message (SPIs, Message ID, I and R flags), opening each on arrival (RFC 7383 s2.6)."""

    def __init__(self) -> None:
        self.pending: dict[tuple[bytes, bytes, int, bool, bool], _Pending] = {}
        self.duplicates = 0

    def add(self, message: Message, keys: SkKeys | IkeSkKeys, strict: bool = False) -> Decrypted | None:
        """Take one decoded SKF message; the reassembled message once all fragments are in, else None."""
        enc = message.payloads[-1]
        if not isinstance(enc, SKF):
            raise IkeParseError("message", "Next Payload", HEADER_SIZE, "not an SKF message")
        plaintext = open_encrypted(message, _keys_for(message, keys))  # authenticate before keeping anything
        h = message.header
        key = (h.spi_i, h.spi_r, h.message_id, h.initiator, h.response)  # each side numbers its own requests
        p = self.pending.get(key)
        if p is None or enc.total_fragments > p.total:
            p = self.pending[key] = _Pending(enc.total_fragments)  # RFC 7383 s2.6: a larger total starts over
        elif enc.total_fragments < p.total:
            return None  # a stale fragment of an older, coarser fragmentation
        if enc.fragment_number in p.parts:
            self.duplicates += 1
            return None
        p.parts[enc.fragment_number] = plaintext
        if enc.fragment_number == 1:
            p.first_payload, p.first_message = enc.first_payload, message
        if len(p.parts) < p.total:
            return None
        del self.pending[key]
        whole = b"".join(p.parts[i] for i in range(1, p.total + 1))
        ctx = ParseContext(strict)
        inner = decode_chain(whole, p.first_payload, ctx, 0, "SKF/")
        return Decrypted(p.first_message or message, inner, whole, None, ctx.findings)

    def missing(self) -> dict[tuple[bytes, bytes, int, bool, bool], list[int]]:
        """Incomplete messages (SPIi, SPIr, Message ID, I flag, R flag) and their missing fragment numbers."""
        return {k: [n for n in range(1, p.total + 1) if n not in p.parts] for k, p in self.pending.items()}
