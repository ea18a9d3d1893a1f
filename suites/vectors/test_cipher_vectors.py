"""AES-CBC (RFC 3602 s4 cases 1-4) and ChaCha20-Poly1305 (RFC 8439, RFC 7634 App. B) against harness.crypto."""
from __future__ import annotations

import pytest

from harness.crypto import encr
from harness.errors import IntegrityError
from harness.vectors import as_params, load_all, unhex

FILES = ("crypto",)


@pytest.mark.parametrize("v", as_params(load_all(FILES, "cipher")))
def test_cipher(v):
    t = encr(v["transform"])
    key, iv, ct = unhex(v, "key"), unhex(v, "iv"), unhex(v, "ciphertext")
    if not v["valid"]:
        with pytest.raises(IntegrityError):
            t.decrypt(key, iv, ct)
        return
    pt = unhex(v, "plaintext")
    assert t.encrypt(key, iv, pt) == ct
    assert t.decrypt(key, iv, ct) == pt


@pytest.mark.parametrize("v", as_params(load_all(FILES, "aead")))
def test_aead(v):
    t = encr(v["transform"])
    keymat = unhex(v, "key") + unhex(v, "salt")
    iv, aad, ct = unhex(v, "iv"), unhex(v, "aad"), unhex(v, "ciphertext")
    if not v["valid"]:
        with pytest.raises(IntegrityError):
            t.decrypt(keymat, iv, ct, aad)
        return
    pt = unhex(v, "plaintext")
    assert len(ct) == len(pt) + t.icv_size
    assert t.encrypt(keymat, iv, pt, aad) == ct
    assert t.decrypt(keymat, iv, ct, aad) == pt
