"""IKEv2 encryption transforms (transform type 1), for ESP and for the IKE SK payload.

Keying material is laid out as the Linux kernel and Wireshark expect it: for AEAD and
counter modes the salt (nonce prefix) follows the key (RFC 3686 s5.1, RFC 4106 s8.1,
RFC 4309 s7.1, RFC 4543 s5, RFC 7634 s4).
"""
from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305

from harness.errors import IntegrityError, KeyMaterialError


@dataclass(frozen=True)
class Encr:
    """An encryption transform: sizes in bytes, key_bits the Key Length attribute values it takes."""

    id: int
    name: str
    family: str  # "cbc", "ctr", "gcm", "ccm", "chacha20poly1305", "gmac", "null"
    key_bits: tuple[int, ...]  # allowed Key Length attribute values; () = fixed, no attribute
    fixed_key_size: int = 0  # key bytes (without salt) when key_bits is ()
    salt_size: int = 0
    iv_size: int = 0
    block_size: int = 1  # payload alignment the cipher needs (ESP still aligns to 4)
    icv_size: int = 0  # AEAD tag length; 0 = needs a separate integrity transform

    @property
    def aead(self) -> bool:
        """True when the transform authenticates by itself (no INTEG transform)."""
        return self.icv_size > 0

    def key_size(self, key_bits: int | None = None) -> int:
        """Bytes of keying material (key plus salt) for the given Key Length attribute."""
        if self.key_bits:
            if key_bits not in self.key_bits:
                raise KeyMaterialError(f"{self.name}: key length {key_bits} bits not in {self.key_bits}")
            return key_bits // 8 + self.salt_size
        if key_bits not in (None, self.fixed_key_size * 8):
            raise KeyMaterialError(f"{self.name}: takes no key length attribute (got {key_bits})")
        return self.fixed_key_size + self.salt_size

    def _split(self, keymat: bytes) -> tuple[bytes, bytes]:
        allowed = [b // 8 + self.salt_size for b in self.key_bits] or [self.fixed_key_size + self.salt_size]
        if len(keymat) not in allowed:
            raise KeyMaterialError(f"{self.name}: keying material is {len(keymat)} bytes, expected one of {allowed}")
        return keymat[: len(keymat) - self.salt_size], keymat[len(keymat) - self.salt_size:]

    def _check_iv(self, iv: bytes) -> None:
        if len(iv) != self.iv_size:
            raise KeyMaterialError(f"{self.name}: IV is {len(iv)} bytes, expected {self.iv_size}")

    def encrypt(self, keymat: bytes, iv: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
        """Ciphertext (followed by the ICV for AEAD transforms); plaintext must be block-aligned."""
        key, salt = self._split(keymat)
        self._check_iv(iv)
        f = self.family
        if f == "null":
            return plaintext
        if f == "cbc":
            if len(plaintext) % 16:
                raise KeyMaterialError(f"{self.name}: plaintext length {len(plaintext)} is not a multiple of 16")
            enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
            return enc.update(plaintext) + enc.finalize()
        if f == "ctr":
            enc = Cipher(algorithms.AES(key), modes.CTR(salt + iv + b"\x00\x00\x00\x01")).encryptor()
            return enc.update(plaintext) + enc.finalize()
        if f == "gcm":
            out = AESGCM(key).encrypt(salt + iv, plaintext, aad)
            return out if self.icv_size == 16 else out[: len(plaintext) + self.icv_size]
        if f == "ccm":
            return AESCCM(key, tag_length=self.icv_size).encrypt(salt + iv, plaintext, aad)
        if f == "chacha20poly1305":
            return ChaCha20Poly1305(key).encrypt(salt + iv, plaintext, aad)
        if f == "gmac":  # RFC 4543 s3.3: everything is authenticated, nothing encrypted
            return plaintext + AESGCM(key).encrypt(salt + iv, b"", aad + iv + plaintext)
        raise AssertionError(f)

    def decrypt(self, keymat: bytes, iv: bytes, data: bytes, aad: bytes = b"") -> bytes:
        """Plaintext of data (ciphertext plus ICV for AEAD); IntegrityError when the tag fails."""
        key, salt = self._split(keymat)
        self._check_iv(iv)
        f = self.family
        if len(data) < self.icv_size:
            raise IntegrityError(f"{self.name}: {len(data)} bytes is shorter than the {self.icv_size}-byte ICV")
        try:
            if f == "null":
                return data
            if f == "cbc":
                if len(data) % 16:
                    raise IntegrityError(f"{self.name}: ciphertext length {len(data)} is not a multiple of 16")
                dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
                return dec.update(data) + dec.finalize()
            if f == "ctr":
                dec = Cipher(algorithms.AES(key), modes.CTR(salt + iv + b"\x00\x00\x00\x01")).decryptor()
                return dec.update(data) + dec.finalize()
            if f == "gcm":
                if self.icv_size == 16:
                    return AESGCM(key).decrypt(salt + iv, data, aad)
                body, tag = data[: -self.icv_size], data[-self.icv_size:]
                dec = Cipher(algorithms.AES(key), modes.GCM(salt + iv, tag, min_tag_length=self.icv_size)).decryptor()
                dec.authenticate_additional_data(aad)
                return dec.update(body) + dec.finalize()
            if f == "ccm":
                return AESCCM(key, tag_length=self.icv_size).decrypt(salt + iv, data, aad)
            if f == "chacha20poly1305":
                return ChaCha20Poly1305(key).decrypt(salt + iv, data, aad)
            if f == "gmac":
                body, tag = data[: -self.icv_size], data[-self.icv_size:]
                AESGCM(key).decrypt(salt + iv, tag, aad + iv + body)
                return body
        except InvalidTag:
            raise IntegrityError(f"{self.name}: ICV does not verify") from None
        raise AssertionError(f)


_AES = (128, 192, 256)

ENCR_TRANSFORMS: tuple[Encr, ...] = (
    Encr(11, "ENCR_NULL", "null", ()),
    Encr(12, "ENCR_AES_CBC", "cbc", _AES, iv_size=16, block_size=16),
    Encr(13, "ENCR_AES_CTR", "ctr", _AES, salt_size=4, iv_size=8),
    Encr(14, "ENCR_AES_CCM_8", "ccm", _AES, salt_size=3, iv_size=8, icv_size=8),
    Encr(15, "ENCR_AES_CCM_12", "ccm", _AES, salt_size=3, iv_size=8, icv_size=12),
    Encr(16, "ENCR_AES_CCM_16", "ccm", _AES, salt_size=3, iv_size=8, icv_size=16),
    Encr(18, "ENCR_AES_GCM_8", "gcm", _AES, salt_size=4, iv_size=8, icv_size=8),
    Encr(19, "ENCR_AES_GCM_12", "gcm", _AES, salt_size=4, iv_size=8, icv_size=12),
    Encr(20, "ENCR_AES_GCM_16", "gcm", _AES, salt_size=4, iv_size=8, icv_size=16),
    Encr(21, "ENCR_NULL_AUTH_AES_GMAC", "gmac", _AES, salt_size=4, iv_size=8, icv_size=16),
    Encr(28, "ENCR_CHACHA20_POLY1305", "chacha20poly1305", (), fixed_key_size=32, salt_size=4, iv_size=8, icv_size=16),
)
