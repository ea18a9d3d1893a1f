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
                 "min_len", "_random", "seal_fast")

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
        self.seal_fast = self._make_seal_fast()

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
            out = hdr + iv + ct
            if self.integ is not None:
                # ICV over ESP header .. trailer; with ESN the high-order bits appended (RFC 4303 s2.2.1)
                icv = self.integ.icv(out + _pack_I(hi) if self.esn else out)
                if corrupt_icv:
                    icv = icv[:-1] + bytes((icv[-1] ^ 1,))
                out += icv
            if corrupt_ciphertext:  # after the ICV: a change in transit
                at = 8 + len(iv)
                out = out[:at] + bytes((out[at] ^ 0x80,)) + out[at + 1:]
            return out
        if corrupt_icv and self.icv_size:
            out = out[:-1] + bytes((out[-1] ^ 1,))
        return out

    def open(self, esp: bytes, seq: int) -> Opened:
        """Verify and decrypt esp (SPI .. ICV) sent with full sequence number seq; PacketDropped when it fails."""
        return self.open_at(esp, 0, len(esp), seq)

    def open_at(self, packet: bytes, start: int, end: int, seq: int) -> Opened:
        """open() of the ESP packet at packet[start:end] without copying it out first."""
        n = end - start
        spi = self.spi
        if n < self.min_len:
            raise MalformedPacket("ESP", "length", start, f"{n} bytes is shorter than header, IV, trailer and ICV ({self.min_len})", spi, seq)
        ivs, icvs = self.iv_size, self.icv_size
        ct_at = start + 8 + ivs
        iv = packet[start + 8:ct_at]
        if self.aead:
            if (end - icvs - ct_at) & 3:
                raise MalformedPacket("ESP", "ciphertext length", ct_at, f"{end - icvs - ct_at} is not a multiple of 4 (RFC 4303 s2.4)", spi, seq)
            aad = _pack_III(spi, seq >> 32 & M32, seq & M32) if self.esn else packet[start:start + 8]
            try:
                pt = self.encr.decrypt(iv, packet[ct_at:end], aad)
            except IntegrityError:
                raise PacketDropped("bad_icv", f"ESP SPI {spi:#010x} seq {seq}: ICV does not verify", spi, seq) from None
        else:
            icv_at = end - icvs
            clen = icv_at - ct_at
            if clen % self.align:
                raise MalformedPacket("ESP", "ciphertext length", ct_at, f"{clen} is not a multiple of {self.align} (RFC 4303 s2.4)", spi, seq)
            if self.integ is not None:
                body = packet[start:icv_at]
                icv = self.integ.icv(body + _pack_I(seq >> 32 & M32) if self.esn else body)
                if not hmac.compare_digest(icv, packet[icv_at:end]):
                    raise PacketDropped("bad_icv", f"ESP SPI {spi:#010x} seq {seq}: ICV does not verify", spi, seq)
            pt = self.encr.decrypt(iv, packet[ct_at:icv_at], b"")
        pad_length = pt[-2]
        if pad_length + 2 > len(pt):
            raise PacketDropped("bad_padding", f"ESP SPI {spi:#010x} seq {seq}: Pad Length {pad_length} exceeds the {len(pt) - 2}-byte payload", spi, seq)
        cut = len(pt) - 2 - pad_length
        if self.check_padding and pad_length and pt[cut:-2] != DEFAULT_PADDING[pad_length]:
            raise PacketDropped("bad_padding", f"ESP SPI {spi:#010x} seq {seq}: Padding is not 1, 2, 3, ... (RFC 4303 s2.4)", spi, seq)
        return Opened(pt[:cut], pt[-1], pad_length)

    def _make_seal_fast(self) -> Callable[[int, bytes, int], bytes]:
        """seal() without faults, for the common case: default padding, fresh IV, no TFC."""
        spi, esn, align, ivs, random = self.spi, self.esn, self.align, self.iv_size, self._random
        encrypt, integ = self.encr.encrypt, self.integ
        trailers = [DEFAULT_PADDING[p] + bytes((p, nh)) for p in range(align) for nh in range(256)]
        pack_II, pack_III, pack_I = _pack_II, _pack_III, _pack_I

        if self.aead:
            def seal_fast(seq: int, payload: bytes, nh: int) -> bytes:
                hdr = pack_II(spi, seq & M32)
                iv = random(ivs)
                pt = payload + trailers[(-(len(payload) + 2) % align) << 8 | nh]
                return b"".join((hdr, iv, encrypt(iv, pt, pack_III(spi, seq >> 32, seq & M32) if esn else hdr)))
            return seal_fast

        icv = integ.icv if integ is not None else None

        def seal_fast(seq: int, payload: bytes, nh: int) -> bytes:
            iv = random(ivs) if ivs else b""
            out = b"".join((pack_II(spi, seq & M32), iv, encrypt(iv, payload + trailers[(-(len(payload) + 2) % align) << 8 | nh], b"")))
            if icv is None:
                return out
            return out + icv(out + pack_I(seq >> 32) if esn else out)
        return seal_fast
