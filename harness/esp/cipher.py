"""Per-SA cipher contexts: the transform registry's algorithms with their key schedule done once.

`harness.crypto.Encr.encrypt` builds a `cryptography` object per call; a data plane that
does that per packet spends most of its time there. `EncrContext(encr, keymat)` and
`IntegContext(integ, key)` validate the key once, keep the primitive objects, and expose
`encrypt(iv, plaintext, aad)` / `decrypt(iv, data, aad)` and `icv(data, iv)` /
`verify(data, icv, iv)` with the same results as the registry (tests check both agree).
"""
from __future__ import annotations

import hashlib
import hmac
from typing import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305

from harness.crypto import Encr, Integ
from harness.errors import IntegrityError, KeyMaterialError

_CTR_ONE = b"\x00\x00\x00\x01"


class EncrContext:
    """An ESP encryption transform bound to its keying material (key || salt)."""

    __slots__ = ("encr", "iv_size", "icv_size", "block_size", "aead", "encrypt", "decrypt")

    def __init__(self, encr: Encr, keymat: bytes) -> None:
        key, salt = encr._split(keymat)  # KeyMaterialError on a wrong length
        self.encr, self.iv_size, self.icv_size, self.aead = encr, encr.iv_size, encr.icv_size, encr.aead
        self.block_size = encr.block_size
        self.encrypt: Callable[[bytes, bytes, bytes], bytes]
        self.decrypt: Callable[[bytes, bytes, bytes], bytes]
        f, name, icv = encr.family, encr.name, encr.icv_size

        def bad_tag() -> IntegrityError:
            return IntegrityError(f"{name}: ICV does not verify")

        if f == "null":
            self.encrypt = lambda iv, pt, aad: pt
            self.decrypt = lambda iv, ct, aad: bytes(ct)
        elif f in ("cbc", "ctr"):
            algo = algorithms.AES(key)
            if f == "cbc":
                def mode(iv: bytes) -> modes.Mode:
                    return modes.CBC(iv)
            else:
                def mode(iv: bytes) -> modes.Mode:
                    return modes.CTR(salt + iv + _CTR_ONE)

            def enc(iv: bytes, pt: bytes, aad: bytes) -> bytes:
                e = Cipher(algo, mode(iv)).encryptor()
                return e.update(pt) + e.finalize()

            def dec(iv: bytes, ct: bytes, aad: bytes) -> bytes:
                d = Cipher(algo, mode(iv)).decryptor()
                return d.update(ct) + d.finalize()
            self.encrypt, self.decrypt = enc, dec
        elif f in ("gcm", "ccm", "chacha20poly1305") and (f != "gcm" or icv == 16):
            aead = AESGCM(key) if f == "gcm" else AESCCM(key, tag_length=icv) if f == "ccm" else ChaCha20Poly1305(key)
            a_enc, a_dec = aead.encrypt, aead.decrypt

            def enc(iv: bytes, pt: bytes, aad: bytes) -> bytes:
                return a_enc(salt + iv, pt, aad)

            def dec(iv: bytes, ct: bytes, aad: bytes) -> bytes:
                if len(ct) < icv:
                    raise IntegrityError(f"{name}: {len(ct)} bytes is shorter than the {icv}-byte ICV")
                try:
                    return a_dec(salt + iv, ct, aad)
                except InvalidTag:
                    raise bad_tag() from None
            self.encrypt, self.decrypt = enc, dec
        elif f == "gcm":  # truncated tags (ENCR_AES_GCM_8/12): AESGCM only checks full 16-byte tags
            g = AESGCM(key)
            algo = algorithms.AES(key)

            def enc(iv: bytes, pt: bytes, aad: bytes) -> bytes:
                return g.encrypt(salt + iv, pt, aad)[: len(pt) + icv]

            def dec(iv: bytes, ct: bytes, aad: bytes) -> bytes:
                if len(ct) < icv:
                    raise IntegrityError(f"{name}: {len(ct)} bytes is shorter than the {icv}-byte ICV")
                d = Cipher(algo, modes.GCM(salt + iv, bytes(ct[-icv:]), min_tag_length=icv)).decryptor()
                d.authenticate_additional_data(aad)
                try:
                    return d.update(ct[:-icv]) + d.finalize()
                except InvalidTag:
                    raise bad_tag() from None
            self.encrypt, self.decrypt = enc, dec
        elif f == "gmac":  # RFC 4543 s3.3: IV and payload authenticated after the ESP AAD, nothing encrypted
            g = AESGCM(key)

            def enc(iv: bytes, pt: bytes, aad: bytes) -> bytes:
                return pt + g.encrypt(salt + iv, b"", aad + iv + pt)

            def dec(iv: bytes, ct: bytes, aad: bytes) -> bytes:
                if len(ct) < icv:
                    raise IntegrityError(f"{name}: {len(ct)} bytes is shorter than the {icv}-byte ICV")
                body = bytes(ct[:-icv])
                try:
                    g.decrypt(salt + iv, ct[-icv:], aad + iv + body)
                except InvalidTag:
                    raise bad_tag() from None
                return body
            self.encrypt, self.decrypt = enc, dec
        else:
            raise KeyMaterialError(f"{name}: family {f!r} has no ESP context")


class IntegContext:
    """An integrity transform bound to its key: icv(data, iv) and a constant-time verify."""

    __slots__ = ("integ", "icv_size", "iv_size", "icv")

    def __init__(self, integ: Integ, key: bytes) -> None:
        if len(key) != integ.key_size:
            raise KeyMaterialError(f"{integ.name}: key is {len(key)} bytes, expected {integ.key_size}")
        self.integ, self.icv_size, self.iv_size = integ, integ.icv_size, integ.iv_size
        n, f = integ.icv_size, integ.family
        self.icv: Callable[..., bytes]
        if f.startswith("hmac-"):
            base = hmac.new(key, digestmod=getattr(hashlib, f[5:]))

            def icv(data: bytes, iv: bytes = b"") -> bytes:
                h = base.copy()
                h.update(data)
                return h.digest()[:n]
        elif f == "xcbc":  # RFC 3566 s4 as CBC-MAC under K1 with the last block masked by K2 or K3
            ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
            k1, k2, k3 = (ecb.update(bytes([i]) * 16) for i in (1, 2, 3))
            k1_algo = algorithms.AES(k1)
            k2i, k3i = int.from_bytes(k2, "big"), int.from_bytes(k3, "big")
            zero_iv = bytes(16)

            def icv(data: bytes, iv: bytes = b"") -> bytes:
                data = bytes(data)
                cut = (len(data) - 1) // 16 * 16 if data else 0
                last = data[cut:]
                if len(last) == 16:
                    masked = int.from_bytes(last, "big") ^ k2i
                else:
                    masked = int.from_bytes(last + b"\x80" + bytes(15 - len(last)), "big") ^ k3i
                e = Cipher(k1_algo, modes.CBC(zero_iv)).encryptor()
                return e.update(data[:cut] + masked.to_bytes(16, "big"))[-16:][:n]
        elif f == "gmac":  # RFC 4543: the tag over data as AAD, nonce = salt || 8-byte IV
            g = AESGCM(key[:-integ.salt_size])
            salt = key[-integ.salt_size:]
            need = integ.iv_size

            def icv(data: bytes, iv: bytes = b"") -> bytes:
                if len(iv) != need:
                    raise KeyMaterialError(f"{integ.name}: IV is {len(iv)} bytes, expected {need}")
                return g.encrypt(salt + iv, b"", data)
        else:
            raise KeyMaterialError(f"{integ.name}: family {f!r} has no context")
        self.icv = icv

    def verify(self, data: bytes, icv: bytes, iv: bytes = b"") -> bool:
        """Constant-time check of a received ICV."""
        return hmac.compare_digest(self.icv(data, iv), icv)
