"""IKEv2 key schedule known answers (NIST CAVP SP 800-135 IKEv2 KDF): SKEYSEED via prf, DKM via prf.plus."""
from __future__ import annotations

import pytest

from harness.crypto import prf
from harness.vectors import as_params, load_all, unhex

FILES = ("kdf",)


@pytest.mark.parametrize("v", as_params(load_all(FILES, "skeyseed")))
def test_skeyseed(v):
    """SKEYSEED = prf(Ni | Nr, g^ir) (RFC 7296 s2.14)."""
    assert prf(v["transform"])(unhex(v, "ni_nr"), unhex(v, "g_ir")) == unhex(v, "skeyseed")


@pytest.mark.parametrize("v", as_params(load_all(FILES, "prf_plus")))
def test_prf_plus(v):
    """KEYMAT = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr) (RFC 7296 s2.13), also every prefix of it."""
    p, key, seed, keymat = prf(v["transform"]), unhex(v, "key"), unhex(v, "seed"), unhex(v, "keymat")
    assert p.plus(key, seed, len(keymat)) == keymat
    for n in (1, p.output_size, p.output_size + 1):
        assert p.plus(key, seed, n) == keymat[:n]


@pytest.mark.parametrize("v", as_params(load_all(FILES, "prf_plus")))
def test_prf_plus_first_block_is_prf(v):
    """T1 = prf(K, S | 0x01): the first block ties prf+ to the bare prf."""
    p, key, seed = prf(v["transform"]), unhex(v, "key"), unhex(v, "seed")
    assert unhex(v, "keymat")[: p.output_size] == p(key, seed + b"\x01")[: len(unhex(v, "keymat"))]
