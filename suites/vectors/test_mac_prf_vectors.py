"""HMAC, AES-XCBC and PRF known answers (RFC 2202, 4868, 3566, 4434) against harness.crypto."""
from __future__ import annotations

import pytest

from harness.crypto import integ, prf
from harness.crypto.integ import aes_xcbc_mac, hmac_digest
from harness.vectors import as_params, load_all, unhex

FILES = ("crypto",)


@pytest.mark.parametrize("v", as_params(load_all(FILES, "prf")))
def test_prf(v):
    assert prf(v["transform"])(unhex(v, "key"), unhex(v, "data")) == unhex(v, "output")


@pytest.mark.parametrize("v", as_params(load_all(FILES, "integ")))
def test_integrity_icv(v):
    t = integ(v["transform"])
    key, data, icv = unhex(v, "key"), unhex(v, "data"), unhex(v, "icv")
    assert len(icv) == t.icv_size
    assert t.verify(key, data, icv) is v["valid"]
    if v["valid"]:
        assert t.icv(key, data) == icv


@pytest.mark.parametrize("v", as_params(load_all(FILES, "hmac_truncated")))
def test_hmac_truncated(v):
    full = hmac_digest(v["hash"], unhex(v, "key"), unhex(v, "data"))
    assert full[: v["truncation_bits"] // 8] == unhex(v, "mac")


@pytest.mark.parametrize("v", as_params(load_all(FILES, "xcbc_mac")))
def test_aes_xcbc_mac(v):
    key, data = unhex(v, "key"), unhex(v, "data")
    assert aes_xcbc_mac(key, data) == unhex(v, "mac")
    assert integ(v["transform"]).icv(key, data) == unhex(v, "icv")
