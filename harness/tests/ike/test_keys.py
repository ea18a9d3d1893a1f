"""Key schedule (RFC 7296 s2.14, s2.17, s2.18) against CAVS/NIST vectors and by construction."""
from __future__ import annotations

import pytest

from harness.crypto import encr, integ, prf
from harness.errors import KeyMaterialError
from harness.ike.keys import derive_child_keys, derive_ike_keys, rekey_skeyseed, skeyseed
from harness.vectors import load_vectors

CAVS = load_vectors("ike/keyschedule_cavs.json")
NIST_SKEYSEED = load_vectors("kdf/cavp_sp800_135_ikev2.json", op="skeyseed")
NIST_DKM = [v for v in load_vectors("kdf/cavp_sp800_135_ikev2.json", op="prf_plus") if v["id"].startswith("cavp-")]
H = bytes.fromhex


@pytest.mark.rfc(7296, "2.14", "MUST")
@pytest.mark.parametrize("v", NIST_SKEYSEED, ids=lambda v: v["id"])
def test_skeyseed_nist(v):
    ni_nr = H(v["ni_nr"])
    half = len(ni_nr) // 2  # HMAC PRFs key with Ni | Nr: the split point does not change the key
    assert skeyseed(prf(v["transform"]), ni_nr[:half], ni_nr[half:], H(v["g_ir"])) == H(v["skeyseed"])


@pytest.mark.rfc(7296, "2.14", "MUST")
@pytest.mark.parametrize("v", NIST_DKM, ids=lambda v: v["id"])
def test_ike_keys_are_dkm_in_order_nist(v):
    p = prf(v["transform"])
    seed, dkm = H(v["seed"]), H(v["keymat"])
    keys = derive_ike_keys(p, encr("ENCR_AES_CBC"), 128, integ("AUTH_HMAC_SHA2_256_128"), H(v["key"]),
                           seed[:-16], b"", seed[-16:-8], seed[-8:])
    joined = keys.sk_d + keys.sk_ai + keys.sk_ar + keys.sk_ei + keys.sk_er + keys.sk_pi + keys.sk_pr
    n = min(len(joined), len(dkm))  # the vector's DKM may be shorter than the seven keys
    assert n >= 100 and joined[:n] == dkm[:n]
    assert len(keys.sk_d) == len(keys.sk_pi) == p.key_size and len(keys.sk_ei) == 16 and len(keys.sk_ai) == 32


@pytest.mark.rfc(7296, "2.14", "MUST")
@pytest.mark.parametrize("v", CAVS, ids=lambda v: v["id"])
def test_skeyseed_and_dkm_cavs(v):
    p = prf(v["transform"])
    s = skeyseed(p, H(v["ni"]), H(v["nr"]), H(v["g_ir"]))
    assert s == H(v["skeyseed"])
    keys = derive_ike_keys(p, encr("ENCR_AES_CBC"), 256, integ("AUTH_HMAC_SHA1_96"), s, H(v["ni"]), H(v["nr"]),
                           H(v["spi_i"]), H(v["spi_r"]))
    joined = keys.sk_d + keys.sk_ai + keys.sk_ar + keys.sk_ei + keys.sk_er + keys.sk_pi + keys.sk_pr
    assert len(joined) == 3 * 20 + 2 * 20 + 2 * 32
    assert joined[:132] == H(v["dkm"])  # the vector's DKM is 132 of the 164 bytes


@pytest.mark.rfc(7296, "2.17", "MUST")
@pytest.mark.parametrize("v", CAVS, ids=lambda v: v["id"])
@pytest.mark.parametrize("pfs", [False, True], ids=["no-ke", "ke"])
def test_child_keymat_cavs(v, pfs):
    p = prf(v["transform"])
    sk_d = H(v["dkm"])[: p.key_size]
    want = H(v["dkm_child_dh" if pfs else "dkm_child"])
    g_new = H(v["g_ir_new"]) if pfs else b""
    # AES-256-CBC + HMAC-SHA1-96: 32 + 20 per direction; encryption key first, initiator->responder first
    k = derive_child_keys(p, sk_d, H(v["ni"]), H(v["nr"]), encr("ENCR_AES_CBC"), 256, integ("AUTH_HMAC_SHA1_96"), g_new)
    assert (k.encr_i, k.integ_i, k.encr_r, k.integ_r) == (want[:32], want[32:52], want[52:84], want[84:104])


@pytest.mark.rfc(7296, "2.18", "MUST")
@pytest.mark.parametrize("v", CAVS, ids=lambda v: v["id"])
def test_rekey_skeyseed_cavs(v):
    p = prf(v["transform"])
    sk_d = H(v["dkm"])[: p.key_size]
    assert rekey_skeyseed(p, sk_d, H(v["g_ir_new"]), H(v["ni"]), H(v["nr"])) == H(v["skeyseed_rekey"])


@pytest.mark.rfc(7296, "2.14", "MUST")
def test_xcbc_skeyseed_uses_first_64_bits_of_each_nonce():
    p = prf("PRF_AES128_XCBC")
    ni, nr, g = bytes(range(32)), bytes(range(100, 132)), b"\x55" * 32
    assert skeyseed(p, ni, nr, g) == p(ni[:8] + nr[:8], g)
    assert skeyseed(p, ni, nr, g) == skeyseed(p, ni[:8] + b"x" * 24, nr[:8] + b"y" * 24, g)
    assert skeyseed(p, ni, nr, g) != p(ni + nr, g)
    with pytest.raises(KeyMaterialError):
        skeyseed(p, b"1234567", nr, g)


@pytest.mark.rfc(5282, "7.1", "MUST")
def test_aead_ike_keys_carry_salt_and_no_integrity_key():
    p = prf("PRF_HMAC_SHA2_256")
    s, ni, nr, si, sr = b"k" * 32, b"i" * 32, b"r" * 32, b"I" * 8, b"R" * 8
    k = derive_ike_keys(p, encr("ENCR_AES_GCM_16"), 256, None, s, ni, nr, si, sr)
    stream = p.plus(s, ni + nr + si + sr, 32 + 36 + 36 + 64)
    assert (k.sk_ai, k.sk_ar) == (b"", b"")
    assert (k.sk_d, k.sk_ei, k.sk_er, k.sk_pi, k.sk_pr) == (stream[:32], stream[32:68], stream[68:104],
                                                            stream[104:136], stream[136:])
    with pytest.raises(KeyMaterialError):
        derive_ike_keys(p, encr("ENCR_AES_GCM_16"), 256, integ("AUTH_HMAC_SHA2_256_128"), s, ni, nr, si, sr)
    with pytest.raises(KeyMaterialError):
        derive_ike_keys(p, encr("ENCR_AES_CBC"), 128, None, s, ni, nr, si, sr)
    with pytest.raises(KeyMaterialError):
        derive_ike_keys(p, encr("ENCR_AES_CBC"), 128, integ(12), s, ni, nr, b"short", sr)


@pytest.mark.rfc(7296, "2.17", "MUST")
def test_child_keys_aead_and_ah_layouts():
    p = prf("PRF_HMAC_SHA2_256")
    sk_d, ni, nr = b"d" * 32, b"i" * 16, b"r" * 16
    stream = p.plus(sk_d, ni + nr, 2 * 36)
    k = derive_child_keys(p, sk_d, ni, nr, encr("ENCR_CHACHA20_POLY1305"), None, None)
    assert (k.encr_i, k.integ_i, k.encr_r, k.integ_r) == (stream[:36], b"", stream[36:], b"")
    ah = derive_child_keys(p, sk_d, ni, nr, None, None, integ("AUTH_HMAC_SHA2_256_128"))
    assert (ah.encr_i, ah.integ_i, ah.encr_r, ah.integ_r) == (b"", stream[:32], b"", p.plus(sk_d, ni + nr, 64)[32:])
