"""IKEv2 pseudorandom functions (transform type 2) and prf+ (RFC 7296 s2.13)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

from harness.crypto.integ import aes_xcbc_mac, hmac_digest, hmac_keyed
from harness.errors import KeyMaterialError


_OCTET = [bytes([n]) for n in range(256)]  # the prf+ counter octets 0x01..0xff


def aes_xcbc_prf_128(key: bytes, data: bytes) -> bytes:
    """AES-XCBC-PRF-128 (RFC 4434 s2): keys shorter than 16 bytes are zero-padded, longer ones reduced."""
    if len(key) < 16:
        key = key + bytes(16 - len(key))
    elif len(key) > 16:
        key = aes_xcbc_mac(bytes(16), key)
    return aes_xcbc_mac(key, data)


@dataclass(frozen=True)
class Prf:
    """A PRF transform: key_size is its preferred key length, output_size its block, in bytes."""

    id: int
    name: str
    family: str  # "hmac-<hash>" or "xcbc"
    key_size: int
    output_size: int

    def __call__(self, key: bytes, data: bytes) -> bytes:
        """prf(key, data)."""
        if self.family == "xcbc":
            return aes_xcbc_prf_128(key, data)
        return hmac_digest(self.family[5:], key, data)

    def plus(self, key: bytes, seed: bytes, length: int) -> bytes:
        """prf+(key, seed) truncated to length bytes: T1 | T2 | ..., Tn = prf(K, Tn-1 | S | n)."""
        if length < 0 or length > 255 * self.output_size:
            raise KeyMaterialError(f"{self.name}: prf+ cannot produce {length} bytes (at most {255 * self.output_size})")
        one = self.keyed(key)
        blocks, t = [], b""
        for n in range(1, -(-length // self.output_size) + 1):
            t = one(t + seed + _OCTET[n])
            blocks.append(t)
        return b"".join(blocks)[:length]

    def keyed(self, key: bytes) -> Callable[[bytes], bytes]:
        """prf(key, .) for several inputs under one key (HMAC: the keyed state is set up once, then copied)."""
        if self.family == "xcbc":
            return partial(aes_xcbc_prf_128, key)
        return hmac_keyed(self.family[5:], key)


PRF_TRANSFORMS: tuple[Prf, ...] = (
    Prf(1, "PRF_HMAC_MD5", "hmac-md5", 16, 16),
    Prf(2, "PRF_HMAC_SHA1", "hmac-sha1", 20, 20),
    Prf(4, "PRF_AES128_XCBC", "xcbc", 16, 16),
    Prf(5, "PRF_HMAC_SHA2_256", "hmac-sha256", 32, 32),
    Prf(6, "PRF_HMAC_SHA2_384", "hmac-sha384", 48, 48),
    Prf(7, "PRF_HMAC_SHA2_512", "hmac-sha512", 64, 64),
)
