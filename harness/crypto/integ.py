"""IKEv2 integrity transforms (transform type 3): truncated HMACs, AES-XCBC-MAC-96, AES-GMAC for AH."""
from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as c_hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from harness.errors import KeyMaterialError

# hash algorithm objects hold no state (each HMAC makes its own context), so one of each serves every call
_HASHES = {"md5": hashes.MD5(), "sha1": hashes.SHA1(), "sha256": hashes.SHA256(), "sha384": hashes.SHA384(),
           "sha512": hashes.SHA512()}


def hmac_digest(hash_name: str, key: bytes, data: bytes) -> bytes:
    """Full-length HMAC (RFC 2104) with the named hash."""
    h = c_hmac.HMAC(key, _HASHES[hash_name])
    h.update(data)
    return h.finalize()


def hmac_keyed(hash_name: str, key: bytes) -> Callable[[bytes], bytes]:
    """HMAC(key, .) with the key set up once: each call copies the keyed state (half the cost of a one-shot HMAC)."""
    base = c_hmac.HMAC(key, _HASHES[hash_name])

    def mac(data: bytes) -> bytes:
        h = base.copy()
        h.update(data)
        return h.finalize()
    return mac


def aes_xcbc_mac(key: bytes, data: bytes) -> bytes:
    """AES-XCBC-MAC (RFC 3566 s4), full 128 bits, for a 16-byte key."""
    if len(key) != 16:
        raise KeyMaterialError(f"AES-XCBC-MAC: key is {len(key)} bytes, expected 16")
    ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    k1, k2, k3 = (ecb.update(bytes([n]) * 16) for n in (1, 2, 3))
    e = Cipher(algorithms.AES(k1), modes.ECB()).encryptor()
    blocks = [data[i:i + 16] for i in range(0, len(data), 16)] or [b""]
    state = bytes(16)
    for block in blocks[:-1]:
        state = e.update(bytes(a ^ b for a, b in zip(state, block)))
    last = blocks[-1]
    if len(last) == 16:
        last = bytes(a ^ b for a, b in zip(last, k2))
    else:
        last = last + b"\x80" + bytes(15 - len(last))
        last = bytes(a ^ b for a, b in zip(last, k3))
    return e.update(bytes(a ^ b for a, b in zip(state, last)))


@dataclass(frozen=True)
class Integ:
    """An integrity transform: key_size and icv_size in bytes; iv_size > 0 only for GMAC."""

    id: int
    name: str
    family: str  # "hmac-<hash>", "xcbc", "gmac"
    key_size: int
    icv_size: int
    salt_size: int = 0
    iv_size: int = 0

    def _check_key(self, key: bytes) -> None:
        if len(key) != self.key_size:
            raise KeyMaterialError(f"{self.name}: key is {len(key)} bytes, expected {self.key_size}")

    def icv(self, key: bytes, data: bytes, iv: bytes = b"") -> bytes:
        """The truncated ICV of data (GMAC: key ends with its 4-byte salt, iv is the 8-byte IV)."""
        self._check_key(key)
        if self.family.startswith("hmac-"):
            return hmac_digest(self.family[5:], key, data)[: self.icv_size]
        if self.family == "xcbc":
            return aes_xcbc_mac(key, data)[: self.icv_size]
        if len(iv) != self.iv_size:
            raise KeyMaterialError(f"{self.name}: IV is {len(iv)} bytes, expected {self.iv_size}")
        k, salt = key[:-self.salt_size], key[-self.salt_size:]
        return AESGCM(k).encrypt(salt + iv, b"", data)

    def verify(self, key: bytes, data: bytes, icv: bytes, iv: bytes = b"") -> bool:
        """Constant-time check of a received ICV."""
        return hmac.compare_digest(self.icv(key, data, iv), icv)


INTEG_TRANSFORMS: tuple[Integ, ...] = (
    Integ(1, "AUTH_HMAC_MD5_96", "hmac-md5", 16, 12),
    Integ(2, "AUTH_HMAC_SHA1_96", "hmac-sha1", 20, 12),
    Integ(5, "AUTH_AES_XCBC_96", "xcbc", 16, 12),
    Integ(9, "AUTH_AES_128_GMAC", "gmac", 20, 16, salt_size=4, iv_size=8),
    Integ(10, "AUTH_AES_192_GMAC", "gmac", 28, 16, salt_size=4, iv_size=8),
    Integ(11, "AUTH_AES_256_GMAC", "gmac", 36, 16, salt_size=4, iv_size=8),
    Integ(12, "AUTH_HMAC_SHA2_256_128", "hmac-sha256", 32, 16),
    Integ(13, "AUTH_HMAC_SHA2_384_192", "hmac-sha384", 48, 24),
    Integ(14, "AUTH_HMAC_SHA2_512_256", "hmac-sha512", 64, 32),
)
