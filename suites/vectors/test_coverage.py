"""Every transform in harness.crypto has a known-answer vector, or a declared gap with a round-trip test."""
from __future__ import annotations

from harness.crypto import ENCR, INTEG, KE, PRF
from harness.vectors import load_all, load_vectors

KAT_FOLDERS = ("crypto", "kdf")
KAT_OPS = {"prf", "integ", "xcbc_mac", "cipher", "aead", "ke", "skeyseed", "prf_plus"}


def _kat_names() -> set[str]:
    """Transform and group names that at least one valid known-answer record exercises."""
    names = set()
    for r in load_all(KAT_FOLDERS):
        if r.get("op") in KAT_OPS and r.get("valid", True):
            names.add(r.get("transform") or r.get("group"))
    return names


def _gaps() -> dict[str, dict]:
    return {r["transform"]: r for r in load_vectors("crypto/kat_gaps.json", "kat_gap")}


def _registry() -> dict[str, str]:
    return {t.name: kind for kind, table in (("ENCR", ENCR), ("INTEG", INTEG), ("PRF", PRF), ("KE", KE)) for t in table.values()}


def test_every_registry_transform_has_a_vector_or_a_declared_gap():
    kat, gaps = _kat_names(), _gaps()
    missing = sorted(n for n in _registry() if n not in kat and n not in gaps)
    assert not missing, f"transforms with neither a known-answer vector nor an entry in vectors/crypto/kat_gaps.json: {missing}"


def test_declared_gaps_are_real():
    """A gap names a registry transform of the stated kind, and no vector file already covers it."""
    reg, kat = _registry(), _kat_names()
    for name, rec in _gaps().items():
        assert reg.get(name) == rec["kind"], f"{rec['id']}: {name} is not a {rec['kind']} transform in the registry"
        assert name not in kat, f"{rec['id']}: {name} now has a known-answer vector; drop the gap"
        assert rec["reason"]


def test_every_vector_names_a_registry_transform():
    reg = _registry()
    for r in load_all(KAT_FOLDERS):
        name = r.get("transform") or r.get("group")
        if r.get("op") in KAT_OPS:
            assert name in reg, f"{r['id']}: {name!r} is not in the registry"
