"""Round trips for every registry transform (the ones without known answers depend on these)."""
from __future__ import annotations

import os

import pytest

from harness.crypto import ENCR, INTEG, KE, PRF, encr
from harness.errors import IntegrityError, KeyExchangeError, KeyMaterialError

SIZES = (0, 1, 15, 16, 17, 64, 1400)


def _keymat(t, bits):
    return os.urandom(t.key_size(bits))


def _encr_cases():
    for t in ENCR.values():
        for bits in t.key_bits or (None,):
            yield pytest.param(t, bits, id=f"{t.name}-{bits or t.fixed_key_size * 8}")


def _pt(t, n):
    return os.urandom(n - n % t.block_size if t.block_size > 1 else n)


@pytest.mark.parametrize("t,bits", list(_encr_cases()))
def test_encr_round_trip(t, bits):
    km, aad = _keymat(t, bits), os.urandom(12)
    for n in SIZES:
        iv, pt = os.urandom(t.iv_size), _pt(t, n)
        ct = t.encrypt(km, iv, pt, aad)
        assert len(ct) == len(pt) + t.icv_size
        assert t.decrypt(km, iv, ct, aad) == pt
        if t.family == "null":
            assert ct == pt
        elif t.family == "gmac":
            assert ct[: len(pt)] == pt  # RFC 4543: authenticated, not encrypted
        elif len(pt) >= 16:
            assert ct[: len(pt)] != pt


@pytest.mark.parametrize("t,bits", [c for c in _encr_cases() if c.values[0].aead])
def test_aead_rejects_tampering(t, bits):
    km, iv, aad, pt = _keymat(t, bits), os.urandom(t.iv_size), os.urandom(8), os.urandom(40)
    ct = t.encrypt(km, iv, pt, aad)
    for bad_ct, bad_aad, bad_iv in ((ct[:-1] + bytes([ct[-1] ^ 1]), aad, iv), (bytes([ct[0] ^ 0x80]) + ct[1:], aad, iv),
                                    (ct, bytes([aad[0] ^ 1]) + aad[1:], iv), (ct, aad, bytes([iv[0] ^ 1]) + iv[1:])):
        with pytest.raises(IntegrityError):
            t.decrypt(km, bad_iv, bad_ct, bad_aad)
    with pytest.raises(IntegrityError):
        t.decrypt(km, iv, ct[: t.icv_size - 1], aad)


@pytest.mark.parametrize("name", ["ENCR_AES_GCM_8", "ENCR_AES_GCM_12"])
def test_short_gcm_tag_is_truncated_gcm16(name):
    """RFC 4106 s3: the 8/12-byte ICV is the leading part of the 16-byte GCM tag."""
    t, full = encr(name), encr("ENCR_AES_GCM_16")
    for bits in t.key_bits:
        km, iv, aad, pt = os.urandom(t.key_size(bits)), os.urandom(8), os.urandom(8), os.urandom(33)
        assert t.encrypt(km, iv, pt, aad) == full.encrypt(km, iv, pt, aad)[: len(pt) + t.icv_size]


def test_ctr_is_a_keystream():
    """AES-CTR (RFC 3686): c1 xor c2 == p1 xor p2 under the same key and IV, and no block alignment."""
    t = encr("ENCR_AES_CTR")
    km, iv = os.urandom(t.key_size(128)), os.urandom(8)
    p1, p2 = os.urandom(37), os.urandom(37)
    c1, c2 = t.encrypt(km, iv, p1), t.encrypt(km, iv, p2)
    assert bytes(a ^ b for a, b in zip(c1, c2)) == bytes(a ^ b for a, b in zip(p1, p2))


@pytest.mark.parametrize("t", list(ENCR.values()), ids=[t.name for t in ENCR.values()])
def test_encr_rejects_wrong_key_length(t):
    with pytest.raises(KeyMaterialError):
        t.encrypt(os.urandom(t.key_size(t.key_bits[0] if t.key_bits else None) + 1), os.urandom(t.iv_size), b"", b"")


@pytest.mark.parametrize("t", list(INTEG.values()), ids=[t.name for t in INTEG.values()])
def test_integ_round_trip(t):
    key, iv, data = os.urandom(t.key_size), os.urandom(t.iv_size), os.urandom(100)
    icv = t.icv(key, data, iv)
    assert len(icv) == t.icv_size
    assert t.verify(key, data, icv, iv)
    assert not t.verify(key, data[:-1] + bytes([data[-1] ^ 1]), icv, iv)
    assert not t.verify(key, data, icv[:-1] + bytes([icv[-1] ^ 1]), iv)
    with pytest.raises(KeyMaterialError):
        t.icv(key + b"\x00", data, iv)


@pytest.mark.parametrize("t", list(PRF.values()), ids=[t.name for t in PRF.values()])
def test_prf_plus_lengths(t):
    key, seed = os.urandom(t.key_size), os.urandom(20)
    out = t.plus(key, seed, 3 * t.output_size + 5)
    assert out[: t.output_size] == t(key, seed + b"\x01")
    assert out[t.output_size: 2 * t.output_size] == t(key, out[: t.output_size] + seed + b"\x02")
    with pytest.raises(KeyMaterialError):
        t.plus(key, seed, 255 * t.output_size + 1)


@pytest.mark.parametrize("g", list(KE.values()), ids=[g.name for g in KE.values()])
def test_ke_agreement(g):
    a, b = g.private_key(), g.private_key()
    assert len(a.public) == g.public_size
    shared = a.exchange(b.public)
    assert shared == b.exchange(a.public)
    assert len(shared) == {"modp": g.public_size, "ecp": g.public_size // 2}.get(g.family, g.public_size)
    with pytest.raises(KeyExchangeError):
        a.exchange(b.public[:-1])
