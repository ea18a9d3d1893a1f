"""The IKEv2 key schedule: SKEYSEED and the SK_* keys (RFC 7296 s2.13, s2.14), IKE SA rekey (s2.18), Child SA KEYMAT (s2.17).

The crypto lives in harness.crypto; this module only arranges inputs and splits outputs.
Key lengths: SK_d, SK_pi, SK_pr take the PRF's preferred key size; SK_ai/SK_ar the
integrity transform's key size (none for AEAD); SK_ei/SK_er the encryption key plus its
salt (RFC 5282 s7.1: the salt is taken from the same KEYMAT, right after the key).
"""
from __future__ import annotations

from dataclasses import dataclass

from harness.crypto import Encr, Integ, Prf
from harness.errors import KeyMaterialError

_FIXED_KEY_PRFS = ("xcbc", "cmac")  # RFC 7296 s2.14: only 64 bits of Ni and of Nr key SKEYSEED


def skeyseed(prf: Prf, ni: bytes, nr: bytes, g_ir: bytes) -> bytes:
    """SKEYSEED = prf(Ni | Nr, g^ir) (RFC 7296 s2.14; AES-XCBC/CMAC PRFs key with the first 8 octets of each nonce)."""
    if prf.family in _FIXED_KEY_PRFS:
        if len(ni) < 8 or len(nr) < 8:
            raise KeyMaterialError(f"{prf.name}: nonces must be at least 8 octets for SKEYSEED")
        return prf(ni[:8] + nr[:8], g_ir)
    return prf(ni + nr, g_ir)


def rekey_skeyseed(prf: Prf, sk_d_old: bytes, g_ir_new: bytes, ni: bytes, nr: bytes) -> bytes:
    """SKEYSEED of a rekeyed IKE SA = prf(SK_d (old), g^ir (new) | Ni | Nr) (RFC 7296 s2.18); prf is the new SA's."""
    return prf(sk_d_old, g_ir_new + ni + nr)


@dataclass(frozen=True)
class IkeKeys:
    """The seven SK_* keys of an IKE SA (RFC 7296 s2.14); sk_ai/sk_ar are b"" for AEAD."""

    skeyseed: bytes
    sk_d: bytes
    sk_ai: bytes
    sk_ar: bytes
    sk_ei: bytes
    sk_er: bytes
    sk_pi: bytes
    sk_pr: bytes


def ike_key_lengths(prf: Prf, encr: Encr, key_bits: int | None, integ: Integ | None) -> tuple[int, int, int]:
    """(PRF key, integrity key, encryption key incl. salt) lengths in bytes for one IKE SA."""
    if encr.aead and integ is not None:
        raise KeyMaterialError(f"{encr.name} is combined-mode: no integrity transform may be used with it")
    if not encr.aead and integ is None:
        raise KeyMaterialError(f"{encr.name} needs an integrity transform")
    return prf.key_size, (integ.key_size if integ else 0), encr.key_size(key_bits)


def derive_ike_keys(prf: Prf, encr: Encr, key_bits: int | None, integ: Integ | None, skeyseed_: bytes,
                    ni: bytes, nr: bytes, spi_i: bytes, spi_r: bytes) -> IkeKeys:
    """{SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)."""
    if len(spi_i) != 8 or len(spi_r) != 8:
        raise KeyMaterialError(f"IKE SPIs must be 8 octets (got {len(spi_i)} and {len(spi_r)})")
    lp, la, le = ike_key_lengths(prf, encr, key_bits, integ)
    stream = prf.plus(skeyseed_, ni + nr + spi_i + spi_r, 3 * lp + 2 * la + 2 * le)
    parts, pos = [], 0
    for n in (lp, la, la, le, le, lp, lp):
        parts.append(stream[pos:pos + n])
        pos += n
    return IkeKeys(skeyseed_, *parts)


@dataclass(frozen=True)
class ChildKeys:
    """One Child SA's keys per direction (RFC 7296 s2.17): encryption key (incl. salt), then integrity key."""

    encr_i: bytes  # initiator -> responder
    integ_i: bytes
    encr_r: bytes  # responder -> initiator
    integ_r: bytes


def derive_child_keys(prf: Prf, sk_d: bytes, ni: bytes, nr: bytes, encr: Encr | None, key_bits: int | None,
                      integ: Integ | None, g_ir_new: bytes = b"") -> ChildKeys:
    """KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr) split initiator->responder first, encryption then integrity key.

    encr is None for AH. Nonces are those of the exchange creating the Child SA
    (IKE_SA_INIT's for the first Child SA, CREATE_CHILD_SA's otherwise).
    """
    le = encr.key_size(key_bits) if encr is not None else 0
    if encr is not None and encr.aead and integ is not None:
        raise KeyMaterialError(f"{encr.name} is combined-mode: no integrity transform may be used with it")
    la = integ.key_size if integ is not None else 0
    stream = prf.plus(sk_d, g_ir_new + ni + nr, 2 * (le + la))
    return ChildKeys(stream[:le], stream[le:le + la], stream[le + la:2 * le + la], stream[2 * le + la:])
