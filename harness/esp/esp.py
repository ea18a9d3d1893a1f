"""The ESP packet codec (RFC 4303 s2): SPI || Sequence Number || IV || ciphertext || ICV, no IP framing.

`EspCodec(sa)` holds the SA's cipher contexts. `seal(seq, payload, next_header, ...)` builds
the ESP bytes (Padding 1, 2, 3... by default, RFC 4303 s2.4; TFC padding before it, s2.7);
`open(esp, seq)` verifies the ICV first (RFC 4303 s3.4.4), decrypts and strips the trailer,
raising PacketDropped ("bad_icv", "bad_padding") or MalformedPacket. ESN: the high-order
32 bits are appended to the ICV input (s2.2.1) or go into the AAD as SPI || seq_hi || seq_lo
(RFC 4106 s5, RFC 4543 s3.3, RFC 7634 s2.1).
"""
from __future__ import annotations

import hmac
import os
import struct
from typing import Callable, NamedTuple

from harness.errors import IntegrityError, MalformedPacket, PacketDropped
from harness.esp.cipher import EncrContext, IntegContext
from harness.esp.sa import SecurityAssociation

M32 = 0xFFFFFFFF
_II = struct.Struct("!II")
_pack_II, _unpack_II = _II.pack, _II.unpack_from
_pack_I = struct.Struct("!I").pack
_pack_III = struct.Struct("!III").pack
# the default Padding of each length: 1, 2, 3, ... (RFC 4303 s2.4)
DEFAULT_PADDING = tuple(bytes(range(1, n + 1)) for n in range(256))


class Opened(NamedTuple):
    """The content of a verified ESP packet: payload (TFC padding still on it), its Next Header and padding."""

    payload: bytes
    next_header: int
    pad_length: int


class EspCodec:
    """ESP framing and cryptography for one SA, the key schedules done once."""

    __slots__ = ("sa", "spi", "esn", "encr", "integ", "iv_size", "icv_size", "align", "aead", "check_padding",
                 "min_len", "_random")

    def __init__(self, sa: SecurityAssociation, random: Callable[[int], bytes] = os.urandom, check_padding: bool = True) -> None:
        e, i = sa.encr, sa.integ
        assert e is not None, "an ESP SA has an encryption transform (checked by SecurityAssociation)"
        self.sa, self.spi, self.esn = sa, sa.spi, sa.esn
        self.encr = EncrContext(e, sa.encryption_key)
        self.integ = IntegContext(i, sa.integrity_key) if i is not None else None
        self.iv_size, self.aead = e.iv_size, e.aead
        self.icv_size = e.icv_size if e.aead else (i.icv_size if i is not None else 0)
        self.align = max(4, e.block_size)
        self.check_padding = check_padding
        self.min_len = 8 + self.iv_size + 2 + self.icv_size
        self._random = random

    def aad(self, spi: int, seq: int) -> bytes:
        """The AEAD additional data: SPI || seq (RFC 4106 s5), SPI || seq_hi || seq_lo with ESN."""
        return _pack_III(spi, seq >> 32 & M32, seq & M32) if self.esn else _pack_II(spi, seq & M32)

    def seal(self, seq: int, payload: bytes, next_header: int, iv: bytes | None = None, padding: bytes | None = None,
             pad_length: int | None = None, tfc_length: int = 0, spi: int | None = None, seq_hi: int | None = None,
             corrupt_icv: bool = False, corrupt_ciphertext: bool = False) -> bytes:
        """The ESP packet for payload (None arguments: the correct value; others are used as given)."""
        spi = self.spi if spi is None else spi
        hdr = _pack_II(spi, seq & M32)
        if iv is None:
            iv = self._random(self.iv_size) if self.iv_size else b""
        if padding is None:
            padding = DEFAULT_PADDING[-(len(payload) + tfc_length + 2) % self.align]
        trailer = bytes((len(padding) if pad_length is None else pad_length, next_header))
        if tfc_length:
            plaintext = b"".join((payload, bytes(tfc_length), padding, trailer))
        else:
            plaintext = payload + padding + trailer
        hi = seq >> 32 & M32 if seq_hi is None else seq_hi
        if self.aead:
            aad = _pack_III(spi, hi, seq & M32) if self.esn else hdr
            ct = self.encr.encrypt(iv, plaintext, aad)
            if corrupt_ciphertext:
                ct = bytes((ct[0] ^ 0x80,)) + ct[1:]
            out = hdr + iv + ct
        else:
            ct = self.encr.encrypt(iv, plaintext, b"")
            if corrupt_ciphertext:
                ct = bytes((ct[0] ^ 0x80,)) + ct[1:]
            out = hdr + iv + ct
            if self.integ is not None:
                # ICV over ESP header .. trailer; with ESN the high-order bits appended (RFC 4303 s2.2.1)
                icv = self.integ.icv(out + _pack_I(hi) if self.esn else out)
                if corrupt_icv:
                    icv = icv[:-1] + bytes((icv[-1] ^ 1,))
                return out + icv
        if corrupt_icv and self.icv_size:
            out = out[:-1] + bytes((out[-1] ^ 1,))
        return out

    def open(self, esp: bytes, seq: int) -> Opened:
        """Verify and decrypt esp (SPI .. ICV) sent with full sequence number seq; PacketDropped when it fails."""
        n = len(esp)
        spi = self.spi
        if n < self.min_len:
            raise MalformedPacket("ESP", "length", 0, f"{n} bytes is shorter than header, IV, trailer and ICV ({self.min_len})", spi, seq)
        ivs, icvs = self.iv_size, self.icv_size
        iv = esp[8:8 + ivs]
        if self.aead:
            if (n - 8 - ivs - icvs) & 3:
                raise MalformedPacket("ESP", "ciphertext length", 8 + ivs, f"{n - 8 - ivs - icvs} is not a multiple of 4 (RFC 4303 s2.4)", spi, seq)
            aad = _pack_III(spi, seq >> 32 & M32, seq & M32) if self.esn else esp[:8]
            try:
                pt = self.encr.decrypt(iv, esp[8 + ivs:], aad)
            except IntegrityError:
                raise PacketDropped("bad_icv", f"ESP SPI {spi:#010x} seq {seq}: ICV does not verify", spi, seq) from None
        else:
            end = n - icvs
            clen = end - 8 - ivs
            if clen % self.align:
                raise MalformedPacket("ESP", "ciphertext length", 8 + ivs, f"{clen} is not a multiple of {self.align} (RFC 4303 s2.4)", spi, seq)
            if self.integ is not None:
                body = esp[:end]
                icv = self.integ.icv(body + _pack_I(seq >> 32 & M32) if self.esn else body)
                if not hmac.compare_digest(icv, esp[end:]):
                    raise PacketDropped("bad_icv", f"ESP SPI {spi:#010x} seq {seq}: ICV does not verify", spi, seq)
            pt = self.encr.decrypt(iv, esp[8 + ivs:end], b"")
        pad_length = pt[-2]
        if pad_length + 2 > len(pt):
            raise PacketDropped("bad_padding", f"ESP SPI {spi:#010x} seq {seq}: Pad Length {pad_length} exceeds the {len(pt) - 2}-byte payload", spi, seq)
        cut = len(pt) - 2 - pad_length
        if self.check_padding and pad_length and pt[cut:-2] != DEFAULT_PADDING[pad_length]:
            raise PacketDropped("bad_padding", f"ESP SPI {spi:#010x} seq {seq}: Padding is not 1, 2, 3, ... (RFC 4303 s2.4)", spi, seq)
        return Opened(pt[:cut], pt[-1], pad_length)
