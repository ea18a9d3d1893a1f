"""The transform registry: every IKEv2 transform by IANA number or name, backed by `cryptography`.

Lookups accept the IANA number, the IANA-style name (``ENCR_AES_GCM_16``) or, for
key-exchange groups, the group's short name (``ECP_256``, ``CURVE25519``).
"""
from __future__ import annotations

from enum import IntEnum
from types import MappingProxyType
from typing import Mapping, TypeVar

from harness.crypto.encr import ENCR_TRANSFORMS, Encr
from harness.crypto.integ import INTEG_TRANSFORMS, Integ
from harness.crypto.ke import KE_GROUPS, KeGroup, KePrivate
from harness.crypto.prf import PRF_TRANSFORMS, Prf
from harness.errors import UnknownTransform

__all__ = ["TransformType", "Encr", "Integ", "Prf", "KeGroup", "KePrivate", "ESN_IDS",
           "ENCR", "INTEG", "PRF", "KE", "encr", "integ", "prf", "ke"]


class TransformType(IntEnum):
    """IKEv2 transform types (RFC 7296 s3.3.2); KE is called D-H there."""

    ENCR = 1
    PRF = 2
    INTEG = 3
    KE = 4
    ESN = 5


ESN_IDS: Mapping[int, str] = MappingProxyType({0: "NO_ESN", 1: "ESN"})

T = TypeVar("T", Encr, Integ, Prf, KeGroup)


def _table(items: tuple[T, ...]) -> Mapping[int, T]:
    return MappingProxyType({t.id: t for t in items})


ENCR: Mapping[int, Encr] = _table(ENCR_TRANSFORMS)
INTEG: Mapping[int, Integ] = _table(INTEG_TRANSFORMS)
PRF: Mapping[int, Prf] = _table(PRF_TRANSFORMS)
KE: Mapping[int, KeGroup] = _table(KE_GROUPS)


_BY_NAME: dict[int, Mapping[str, Encr | Integ | Prf | KeGroup]] = {
    id(table): MappingProxyType({t.name: t for t in reversed(table.values())}) for table in (ENCR, INTEG, PRF, KE)}


def _lookup(table: Mapping[int, T], kind: str, ref: int | str) -> T:
    if isinstance(ref, int):
        if ref in table:
            return table[ref]
    else:
        found = _BY_NAME[id(table)].get(ref.upper())
        if found is not None:
            return found  # type: ignore[return-value]
    raise UnknownTransform(f"unknown {kind} transform {ref!r}; known: {', '.join(t.name for t in table.values())}")


def encr(ref: int | str) -> Encr:
    """The encryption transform with this IANA number or name."""
    return _lookup(ENCR, "encryption", ref)


def integ(ref: int | str) -> Integ:
    """The integrity transform with this IANA number or name."""
    return _lookup(INTEG, "integrity", ref)


def prf(ref: int | str) -> Prf:
    """The PRF with this IANA number or name."""
    return _lookup(PRF, "PRF", ref)


def ke(ref: int | str) -> KeGroup:
    """The key-exchange group with this IANA number or name."""
    return _lookup(KE, "key exchange", ref)
