"""DH/ECDH/X25519 known answers (RFC 5114 App. A, RFC 5903 s8, RFC 7748 s6.1, RFC 8031 App. A) against harness.crypto."""
from __future__ import annotations

import math
import struct
from fractions import Fraction

import pytest

from harness.crypto import KE, ke
from harness.errors import KeyExchangeError
from harness.vectors import as_params, load_all, unhex

FILES = ("crypto",)


def _private(group, record, field):
    raw = unhex(record, field)
    return group.private_key(raw if group.family in ("x25519", "x448") else int.from_bytes(raw, "big"))


@pytest.mark.parametrize("v", as_params(load_all(FILES, "ke")))
def test_key_exchange(v):
    g = ke(v["group"])
    priv_i = _private(g, v, "private_i")
    if not v["valid"]:
        with pytest.raises(KeyExchangeError):
            priv_i.exchange(unhex(v, "public_r"))
        return
    priv_r = _private(g, v, "private_r")
    assert priv_i.public == unhex(v, "public_i")
    assert priv_r.public == unhex(v, "public_r")
    assert priv_i.exchange(priv_r.public) == unhex(v, "shared")
    assert priv_r.exchange(priv_i.public) == unhex(v, "shared")


@pytest.mark.parametrize("v", as_params(r for r in load_all(FILES, "ke") if "ke_payload_i" in r))
def test_ke_payload_bytes(v):
    """RFC 7296 s3.4 KE payload: generic header (next 0, flags 0, length), DH Group Num, RESERVED, KE data."""
    g = ke(v["group"])
    assert g.id == v["ike_group"]
    for side in ("i", "r"):
        data = _private(g, v, f"private_{side}").public
        payload = struct.pack("!BBHHH", 0, 0, 8 + len(data), g.id, 0) + data
        assert payload == unhex(v, f"ke_payload_{side}")


@pytest.mark.parametrize("v", as_params(load_all(FILES, "modp_params")))
def test_rfc5114_group_parameters(v):
    g = ke(v["group"])
    assert (g.p, g.g, g.q) == (int(v["p"], 16), int(v["g"], 16), int(v["q"], 16))
    assert pow(g.g, g.q, g.p) == 1


def _pi_digits(bits: int) -> Fraction:
    """pi to well beyond `bits` binary digits (Machin's formula in exact integer arithmetic)."""
    scale = 1 << (bits + 64)

    def arctan_inv(x: int) -> int:
        total, term, n, sign = 0, scale // x, 1, 1
        while term:
            total += sign * (term // n)
            term //= x * x
            n += 2
            sign = -sign
        return total

    return Fraction(4 * (4 * arctan_inv(5) - arctan_inv(239)), scale)


def _probably_prime(n: int) -> bool:
    """Miller-Rabin to base 2: never rejects a prime; a composite of this form passing it is not a practical concern."""
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for a in (2,):
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


@pytest.mark.parametrize("v", as_params(load_all(FILES, "modp_formula")))
def test_modp_prime_from_formula(v):
    """RFC 2409 s6 / RFC 3526: p = 2^n - 2^(n-64) - 1 + 2^64 * (floor(2^(n-130) * pi) + k) is the registry's prime, a safe prime."""
    g = ke(v["group"])
    n = v["bits"]
    p = 2**n - 2 ** (n - 64) - 1 + 2**64 * (math.floor(2 ** (n - 130) * _pi_digits(n)) + v["k"])
    assert g.id == v["ike_group"]
    assert g.p == p
    assert (g.g, g.q, g.public_size * 8) == (2, 0, n)
    assert _probably_prime(p) and _probably_prime((p - 1) // 2)


def test_every_formula_modp_group_is_checked():
    """Each MODP group without a subgroup order q comes from the RFC 2409/3526 formula and has a vector here."""
    checked = {v["group"] for v in load_all(FILES, "modp_formula")}
    assert {g.name for g in KE.values() if g.family == "modp" and not g.q} == checked
