"""IKEv2 key-exchange groups (transform type 4): MODP (RFC 3526/5114), ECP (RFC 5903), Curve25519/448 (RFC 8031).

KE payload data and shared secrets follow RFC 7296 s3.4 / RFC 5903 s7 / RFC 8031 s3:
MODP values are big-endian padded to the prime's length, ECP public values are x || y and
the shared secret is x, Curve25519/448 values are the raw RFC 7748 strings.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

from cryptography.hazmat.primitives.asymmetric import dh, ec, x448, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from harness.errors import KeyExchangeError, KeyMaterialError


@dataclass(frozen=True)
class KeGroup:
    """A key-exchange group: public_size is the KE payload's data length in bytes."""

    id: int
    name: str
    family: str  # "modp", "ecp", "x25519", "x448"
    public_size: int
    p: int = 0
    g: int = 0
    q: int = 0
    curve: str = ""

    def private_key(self, secret: bytes | int | None = None) -> "KePrivate":
        """A private key: random, or fixed (an integer exponent/scalar, or raw X25519/X448 bytes) for known answers."""
        return KePrivate(self, _make_private(self, secret))

    def load_public(self, data: bytes):
        """The peer's KE data as a `cryptography` public key; KeyExchangeError if malformed or off the group."""
        if len(data) != self.public_size:
            raise KeyExchangeError(f"{self.name}: KE data is {len(data)} bytes, expected {self.public_size}")
        try:
            if self.family == "modp":
                y = int.from_bytes(data, "big")
                if not 1 < y < self.p - 1:
                    raise KeyExchangeError(f"{self.name}: public value out of range (1, p-1)")
                if self.q and pow(y, self.q, self.p) != 1:
                    raise KeyExchangeError(f"{self.name}: public value not in the order-q subgroup")
                return dh.DHPublicNumbers(y, _params(self)).public_key()
            if self.family == "ecp":
                return ec.EllipticCurvePublicKey.from_encoded_point(_CURVES[self.curve](), b"\x04" + data)
            if self.family == "x25519":
                return x25519.X25519PublicKey.from_public_bytes(data)
            return x448.X448PublicKey.from_public_bytes(data)
        except ValueError as e:
            raise KeyExchangeError(f"{self.name}: KE data rejected: {e}") from None


class KePrivate:
    """One side's ephemeral key: `public` is its KE payload data, `exchange` gives g^ir."""

    def __init__(self, group: KeGroup, key) -> None:
        self.group, self._key = group, key
        self.public = _public_bytes(group, key.public_key())

    def exchange(self, peer_public: bytes) -> bytes:
        """The shared secret g^ir as RFC 7296 s2.14 feeds it to SKEYSEED."""
        peer = self.group.load_public(peer_public)
        g = self.group
        try:
            if g.family == "ecp":
                return self._key.exchange(ec.ECDH(), peer)
            shared = self._key.exchange(peer)
        except ValueError as e:
            raise KeyExchangeError(f"{g.name}: key exchange failed: {e}") from None
        return shared.rjust(g.public_size, b"\x00") if g.family == "modp" else shared


_CURVES = {"P-192": ec.SECP192R1, "P-224": ec.SECP224R1, "P-256": ec.SECP256R1, "P-384": ec.SECP384R1, "P-521": ec.SECP521R1}


def _params(group: KeGroup) -> dh.DHParameterNumbers:
    return dh.DHParameterNumbers(group.p, group.g, group.q or None)


def _make_private(group: KeGroup, secret: bytes | int | None):
    f = group.family
    if f == "modp":
        params = _params(group)
        if secret is None:
            # A 2*128..2*256-bit exponent is RFC 3526 s8 practice; OpenSSL picks it from q or p.
            return params.parameters().generate_private_key()
        x = secret if isinstance(secret, int) else int.from_bytes(secret, "big")
        return dh.DHPrivateNumbers(x, dh.DHPublicNumbers(pow(group.g, x, group.p), params)).private_key()
    if f == "ecp":
        curve = _CURVES[group.curve]()
        if secret is None:
            return ec.generate_private_key(curve)
        return ec.derive_private_key(secret if isinstance(secret, int) else int.from_bytes(secret, "big"), curve)
    cls = x25519.X25519PrivateKey if f == "x25519" else x448.X448PrivateKey
    if secret is None:
        return cls.generate()
    if not isinstance(secret, bytes):
        raise KeyMaterialError(f"{group.name}: a fixed private key is raw bytes")
    return cls.from_private_bytes(secret)


def _public_bytes(group: KeGroup, pub) -> bytes:
    if group.family == "modp":
        return pub.public_numbers().y.to_bytes(group.public_size, "big")
    if group.family == "ecp":
        return pub.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)[1:]
    return pub.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _modp_groups() -> tuple[KeGroup, ...]:
    data = json.loads(resources.files("harness.crypto").joinpath("modp_groups.json").read_text())
    return tuple(
        KeGroup(g["id"], g["name"], "modp", (int(g["p"], 16).bit_length() + 7) // 8,
                p=int(g["p"], 16), g=int(g["g"], 16), q=int(g.get("q", "0"), 16))
        for g in data["groups"]
    )


KE_GROUPS: tuple[KeGroup, ...] = _modp_groups() + (
    KeGroup(19, "ECP_256", "ecp", 64, curve="P-256"),
    KeGroup(20, "ECP_384", "ecp", 96, curve="P-384"),
    KeGroup(21, "ECP_521", "ecp", 132, curve="P-521"),
    KeGroup(25, "ECP_192", "ecp", 48, curve="P-192"),
    KeGroup(26, "ECP_224", "ecp", 56, curve="P-224"),
    KeGroup(31, "CURVE25519", "x25519", 32),
    KeGroup(32, "CURVE448", "x448", 56),
)
