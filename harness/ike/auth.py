"""IKEv2 peer authentication (RFC 7296 s2.15, s3.5, s3.8; RFC 4754; RFC 7427): identities, signed octets, AUTH data.

Identities are (ID Type, Identification Data) pairs; `Identity.body()` is RestOfIDPayload,
the ID payload without its generic header, which is what the MACedIDFor{I,R} hash covers.
AUTH data for every method is produced by `make_auth` and checked by `verify_auth`, which
raises AuthenticationFailed (AUTHENTICATION_FAILED) on any mismatch.
"""
from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from functools import lru_cache
from enum import IntEnum

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from harness.crypto import Prf
from harness.errors import AuthenticationFailed, ConfigError, ParseError

KEY_PAD = b"Key Pad for IKEv2"  # RFC 7296 s2.15


class IdType(IntEnum):
    """ID payload types (RFC 7296 s3.5)."""

    ID_IPV4_ADDR = 1
    ID_FQDN = 2
    ID_RFC822_ADDR = 3
    ID_IPV6_ADDR = 5
    ID_DER_ASN1_DN = 9
    ID_DER_ASN1_GN = 10
    ID_KEY_ID = 11


class AuthMethod(IntEnum):
    """AUTH payload methods (RFC 7296 s3.8, RFC 4754 s7, RFC 7427 s7)."""

    RSA_SIG = 1
    SHARED_KEY_MIC = 2
    DSS_SIG = 3
    ECDSA_SHA256_P256 = 9
    ECDSA_SHA384_P384 = 10
    ECDSA_SHA512_P521 = 11
    DIGITAL_SIGNATURE = 14


class HashAlg(IntEnum):
    """SIGNATURE_HASH_ALGORITHMS values (RFC 7427 s7, RFC 8420)."""

    SHA1 = 1
    SHA2_256 = 2
    SHA2_384 = 3
    SHA2_512 = 4
    IDENTITY = 5


_HASH = {HashAlg.SHA1: hashes.SHA1, HashAlg.SHA2_256: hashes.SHA256, HashAlg.SHA2_384: hashes.SHA384,
         HashAlg.SHA2_512: hashes.SHA512}


@dataclass(frozen=True)
class Identity:
    """An IKE identity: ID Type and Identification Data."""

    id_type: int
    data: bytes

    @classmethod
    def of(cls, text: str) -> "Identity":
        """From text: an IPv4/IPv6 address, user@fqdn (RFC822), an RFC 4514 DN ("CN=..."), or an FQDN."""
        try:
            ip = ipaddress.ip_address(text)
            return cls(IdType.ID_IPV4_ADDR if ip.version == 4 else IdType.ID_IPV6_ADDR, ip.packed)
        except ValueError:
            pass
        if "=" in text:
            from harness.ike.certs import dn_der  # local import: certs needs Identity too
            return cls(IdType.ID_DER_ASN1_DN, dn_der(text))
        if "@" in text:
            return cls(IdType.ID_RFC822_ADDR, text.encode())
        return cls(IdType.ID_FQDN, text.encode())

    def body(self) -> bytes:
        """RestOfIDPayload: ID Type, three RESERVED octets, Identification Data."""
        return bytes([self.id_type, 0, 0, 0]) + self.data

    @classmethod
    def from_body(cls, body: bytes) -> "Identity":
        """Parse RestOfIDPayload; ParseError if shorter than its 4-octet header."""
        if len(body) < 4:
            raise ParseError("ID payload", "ID Type", 0, f"body is {len(body)} octets, needs at least 4")
        return cls(body[0], bytes(body[4:]))

    def matches(self, other: "Identity") -> bool:
        """The same identity: equal type and data, a DN compared as a name (RFC 5280 s7.1), not as bytes."""
        if self.id_type != other.id_type:
            return False
        if self.id_type == IdType.ID_DER_ASN1_DN:
            from harness.ike.certs import dn_equal
            return dn_equal(self.data, other.data)
        return self.data == other.data

    def __str__(self) -> str:
        if self.id_type in (IdType.ID_IPV4_ADDR, IdType.ID_IPV6_ADDR) and len(self.data) in (4, 16):
            return str(ipaddress.ip_address(self.data))
        if self.id_type in (IdType.ID_FQDN, IdType.ID_RFC822_ADDR):
            return self.data.decode(errors="replace")
        if self.id_type == IdType.ID_DER_ASN1_DN:
            from harness.ike.certs import dn_text
            return dn_text(self.data)
        return f"{self.id_type}:{self.data.hex()}"


def signed_octets(real_message: bytes, peer_nonce: bytes, prf: Prf, sk_p: bytes, identity: Identity) -> bytes:
    """InitiatorSignedOctets / ResponderSignedOctets: RealMessage | Nonce(peer) | prf(SK_p, RestOfIDPayload)."""
    return real_message + peer_nonce + prf(sk_p, identity.body())


@lru_cache(maxsize=64)
def _padded(prf: Prf, secret: bytes):
    return prf.keyed(prf(secret, KEY_PAD))


def psk_auth(prf: Prf, secret: bytes, octets: bytes) -> bytes:
    """AUTH = prf(prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>) (RFC 7296 s2.15); the inner prf depends
    only on the PRF and the secret, so it (and the outer prf's key setup) is done once per pair."""
    return _padded(prf, bytes(secret))(octets)


# RFC 7427 Appendix A: DER AlgorithmIdentifiers; RSASSA-PSS is built by _pss_alg_id.
_OID_RSA_PSS = bytes.fromhex("2a864886f70d01010a")
_OID_MGF1 = bytes.fromhex("2a864886f70d010108")
_HASH_OIDS = {HashAlg.SHA1: bytes.fromhex("2b0e03021a"), HashAlg.SHA2_256: bytes.fromhex("608648016503040201"),
              HashAlg.SHA2_384: bytes.fromhex("608648016503040202"), HashAlg.SHA2_512: bytes.fromhex("608648016503040203")}
_ALG_IDS: dict[tuple[str, HashAlg], bytes] = {
    ("rsa", HashAlg.SHA1): bytes.fromhex("300d06092a864886f70d0101050500"),
    ("rsa", HashAlg.SHA2_256): bytes.fromhex("300d06092a864886f70d01010b0500"),
    ("rsa", HashAlg.SHA2_384): bytes.fromhex("300d06092a864886f70d01010c0500"),
    ("rsa", HashAlg.SHA2_512): bytes.fromhex("300d06092a864886f70d01010d0500"),
    ("ecdsa", HashAlg.SHA2_256): bytes.fromhex("300a06082a8648ce3d040302"),
    ("ecdsa", HashAlg.SHA2_384): bytes.fromhex("300a06082a8648ce3d040303"),
    ("ecdsa", HashAlg.SHA2_512): bytes.fromhex("300a06082a8648ce3d040304"),
    ("ed25519", HashAlg.IDENTITY): bytes.fromhex("300506032b6570"),
}


def _der(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    ln = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(ln)]) + ln + content


def _hash_alg_id(h: HashAlg) -> bytes:
    return _der(0x30, _der(0x06, _HASH_OIDS[h]) + b"\x05\x00")


def _pss_alg_id(h: HashAlg) -> bytes:
    """RSASSA-PSS AlgorithmIdentifier (RFC 4055 s3.1): hash h, MGF1 with h, salt length = hash length."""
    salt = _HASH[h]().digest_size
    params = (_der(0xA0, _hash_alg_id(h)) + _der(0xA1, _der(0x30, _der(0x06, _OID_MGF1) + _hash_alg_id(h)))
              + _der(0xA2, _der(0x02, bytes([salt]))))
    return _der(0x30, _der(0x06, _OID_RSA_PSS) + _der(0x30, params))


def _read_tlv(data: bytes, pos: int, what: str) -> tuple[int, bytes, int]:
    """(tag, content, next position) of the DER element at pos; AuthenticationFailed if truncated."""
    if pos + 2 > len(data):
        raise AuthenticationFailed(f"{what}: truncated DER at offset {pos}")
    tag, n, pos = data[pos], data[pos + 1], pos + 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0 or k > 3 or pos + k > len(data):
            raise AuthenticationFailed(f"{what}: bad DER length at offset {pos - 1}")
        n, pos = int.from_bytes(data[pos:pos + k], "big"), pos + k
    if pos + n > len(data):
        raise AuthenticationFailed(f"{what}: DER element runs past the end at offset {pos}")
    return tag, data[pos:pos + n], pos + n


def _parse_pss(alg_id: bytes) -> HashAlg:
    """The hash of an RSASSA-PSS AlgorithmIdentifier; only MGF1 with the same hash and salt = hash length."""
    _, seq, _ = _read_tlv(alg_id, 0, "RSASSA-PSS AlgorithmIdentifier")
    _, oid, pos = _read_tlv(seq, 0, "RSASSA-PSS OID")
    _, params, _ = _read_tlv(seq, pos, "RSASSA-PSS-params")
    fields, pos = {}, 0
    while pos < len(params):
        tag, content, pos = _read_tlv(params, pos, "RSASSA-PSS-params")
        fields[tag] = content
    hash_alg = HashAlg.SHA1
    if 0xA0 in fields:
        _, h_seq, _ = _read_tlv(fields[0xA0], 0, "hashAlgorithm")
        _, h_oid, _ = _read_tlv(h_seq, 0, "hashAlgorithm OID")
        hash_alg = next((h for h, o in _HASH_OIDS.items() if o == h_oid), None)
        if hash_alg is None:
            raise AuthenticationFailed(f"RSASSA-PSS: unsupported hash OID {h_oid.hex()}")
    salt = int.from_bytes(_read_tlv(fields[0xA2], 0, "saltLength")[1], "big") if 0xA2 in fields else 20
    if salt != _HASH[hash_alg]().digest_size:
        raise AuthenticationFailed(f"RSASSA-PSS: salt length {salt} is not the hash length")
    return hash_alg


def _family(key) -> str:
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return "rsa"
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return "ecdsa"
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return "ed25519"
    raise ConfigError(f"unsupported key type {type(key).__name__} for IKEv2 signatures")


_ECDSA_METHODS = {AuthMethod.ECDSA_SHA256_P256: ("secp256r1", hashes.SHA256, 32),
                  AuthMethod.ECDSA_SHA384_P384: ("secp384r1", hashes.SHA384, 48),
                  AuthMethod.ECDSA_SHA512_P521: ("secp521r1", hashes.SHA512, 66)}
_CURVE_HASH = {"secp256r1": HashAlg.SHA2_256, "secp384r1": HashAlg.SHA2_384, "secp521r1": HashAlg.SHA2_512}


def default_signature(key, peer_hashes: frozenset[int] | None) -> tuple[AuthMethod, HashAlg | None, bool]:
    """(method, hash, pss) to sign with this key: RFC 7427 when the peer announced a usable hash, else the legacy method."""
    fam = _family(key)
    if fam == "ed25519":
        return AuthMethod.DIGITAL_SIGNATURE, HashAlg.IDENTITY, False
    pref = _CURVE_HASH[key.curve.name] if fam == "ecdsa" else HashAlg.SHA2_256
    if peer_hashes:
        for h in (pref, HashAlg.SHA2_256, HashAlg.SHA2_384, HashAlg.SHA2_512):
            if h in peer_hashes:
                return AuthMethod.DIGITAL_SIGNATURE, h, False
    if fam == "rsa":
        return AuthMethod.RSA_SIG, None, False
    method = next((m for m, (curve, _, _) in _ECDSA_METHODS.items() if curve == key.curve.name), None)
    if method is None:
        raise ConfigError(f"no RFC 4754 method for curve {key.curve.name}; the peer must support RFC 7427")
    return method, None, False


# Signature schemes by name, the one vocabulary of a Connection's auth.signature, the built-in end's choice and what it
# reports of a peer: legacy (RFC 7296 method 1, RFC 4754 methods 9-11), RFC 7427 method 14 with PKCS#1 v1.5, RSASSA-PSS
# or ECDSA and a SHA-2 hash, and Ed25519 (RFC 8420).
_SCHEME_HASHES = {"sha256": HashAlg.SHA2_256, "sha384": HashAlg.SHA2_384, "sha512": HashAlg.SHA2_512}
SCHEMES = ("legacy", *(f"{k}-{h}" for k in ("pkcs1", "pss", "ecdsa") for h in _SCHEME_HASHES), "ed25519")


def scheme_hash(scheme: str) -> HashAlg | None:
    """The RFC 7427 hash a scheme name signs with (None for legacy)."""
    if scheme == "ed25519":
        return HashAlg.IDENTITY
    return _SCHEME_HASHES.get(scheme.partition("-")[2])


def scheme_signature(scheme: str, key) -> tuple[AuthMethod, HashAlg | None, bool]:
    """(method, hash, pss) that signs with this key by the named scheme; ConfigError if the key cannot."""
    if scheme not in SCHEMES:
        raise ConfigError(f"signature scheme {scheme!r}: not one of {', '.join(SCHEMES)}")
    fam = _family(key)
    kind = scheme.partition("-")[0]
    if scheme == "legacy" and fam != "ed25519":
        return default_signature(key, None)
    if {"pkcs1": "rsa", "pss": "rsa", "legacy": "rsa or ecdsa"}.get(kind, kind) != fam:
        raise ConfigError(f"signature scheme {scheme!r} cannot sign with a {fam} key")
    return AuthMethod.DIGITAL_SIGNATURE, scheme_hash(scheme), kind == "pss"


def scheme_of(method: int, auth_data: bytes) -> str:
    """The scheme name of a received AUTH payload (psk, legacy, a SCHEMES name, or method-N / the unknown AlgorithmIdentifier)."""
    if method == AuthMethod.SHARED_KEY_MIC:
        return "psk"
    if method in (AuthMethod.RSA_SIG, *_ECDSA_METHODS):
        return "legacy"
    if method != AuthMethod.DIGITAL_SIGNATURE:
        return f"method-{method}"
    if not auth_data or len(auth_data) < 1 + auth_data[0]:
        return "method-14-truncated"
    alg_id = auth_data[1:1 + auth_data[0]]
    names = {v: k for k, v in _SCHEME_HASHES.items()}
    match = next((k for k, v in _ALG_IDS.items() if v == alg_id), None)
    if match is not None:
        kind, h = match
        return "ed25519" if kind == "ed25519" else f"{'pkcs1' if kind == 'rsa' else kind}-{names.get(h, h.name.lower())}"
    try:
        return f"pss-{names[_parse_pss(alg_id)]}"
    except (AuthenticationFailed, KeyError):
        return f"method-14-{alg_id.hex()}"


def sign_auth(method: int, key, octets: bytes, hash_alg: int | None = None, pss: bool = False) -> bytes:
    """AUTH data signing octets with a private key by method 1, 9-11 or 14 (hash_alg and pss for 14)."""
    fam = _family(key)
    if method == AuthMethod.RSA_SIG and fam == "rsa":
        return key.sign(octets, padding.PKCS1v15(), hashes.SHA1())
    if method in _ECDSA_METHODS and fam == "ecdsa":
        curve, h, size = _ECDSA_METHODS[AuthMethod(method)]
        if key.curve.name != curve:
            raise ConfigError(f"method {AuthMethod(method).name} needs a {curve} key, not {key.curve.name}")
        r, s = decode_dss_signature(key.sign(octets, ec.ECDSA(h())))
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if method == AuthMethod.DIGITAL_SIGNATURE:
        h = HashAlg(hash_alg if hash_alg is not None else (HashAlg.IDENTITY if fam == "ed25519" else HashAlg.SHA2_256))
        if fam == "ed25519":
            alg_id, sig = _ALG_IDS[("ed25519", HashAlg.IDENTITY)], key.sign(octets)
        elif fam == "rsa" and pss:
            alg_id = _pss_alg_id(h)
            sig = key.sign(octets, padding.PSS(padding.MGF1(_HASH[h]()), _HASH[h]().digest_size), _HASH[h]())
        elif (fam, h) in _ALG_IDS:
            alg_id = _ALG_IDS[(fam, h)]
            sig = key.sign(octets, padding.PKCS1v15(), _HASH[h]()) if fam == "rsa" else key.sign(octets, ec.ECDSA(_HASH[h]()))
        else:
            raise ConfigError(f"no RFC 7427 signature for a {fam} key with hash {h.name}")
        return bytes([len(alg_id)]) + alg_id + sig
    raise ConfigError(f"AUTH method {method} cannot sign with a {fam} key")


def verify_auth(method: int, public_key, octets: bytes, auth_data: bytes,
                accepted_hashes: frozenset[int] | None = None) -> None:
    """Check AUTH data made with method 1, 9-11 or 14 against a public key; AuthenticationFailed if it does not verify."""
    try:
        fam = _family(public_key)
    except ConfigError as e:
        raise AuthenticationFailed(str(e)) from None
    try:
        if method == AuthMethod.RSA_SIG and fam == "rsa":
            public_key.verify(auth_data, octets, padding.PKCS1v15(), hashes.SHA1())
            return
        if method in _ECDSA_METHODS and fam == "ecdsa":
            curve, h, size = _ECDSA_METHODS[AuthMethod(method)]
            if public_key.curve.name != curve or len(auth_data) != 2 * size:
                raise AuthenticationFailed(f"{AuthMethod(method).name}: key curve {public_key.curve.name}, "
                                           f"signature {len(auth_data)} octets")
            sig = encode_dss_signature(int.from_bytes(auth_data[:size], "big"), int.from_bytes(auth_data[size:], "big"))
            public_key.verify(sig, octets, ec.ECDSA(h()))
            return
        if method == AuthMethod.DIGITAL_SIGNATURE:
            _verify_7427(fam, public_key, octets, auth_data, accepted_hashes)
            return
    except InvalidSignature:
        raise AuthenticationFailed(f"AUTH method {method}: signature does not verify") from None
    except (UnsupportedAlgorithm, ValueError) as e:
        raise AuthenticationFailed(f"AUTH method {method}: signature rejected: {e}") from None
    raise AuthenticationFailed(f"AUTH method {method} does not fit the peer's {fam} key")


def _verify_7427(fam: str, public_key, octets: bytes, auth_data: bytes, accepted: frozenset[int] | None) -> None:
    if not auth_data or len(auth_data) < 1 + auth_data[0]:
        raise AuthenticationFailed("DIGITAL_SIGNATURE: AUTH data shorter than its ASN.1 length octet says")
    alg_id, sig = auth_data[1:1 + auth_data[0]], auth_data[1 + auth_data[0]:]
    match = next((k for k, v in _ALG_IDS.items() if v == alg_id), None)
    oid = _read_tlv(_read_tlv(alg_id, 0, "AlgorithmIdentifier")[1], 0, "AlgorithmIdentifier OID")[1]
    if match is None and oid == _OID_RSA_PSS:
        h, pss = _parse_pss(alg_id), True
        kind = "rsa"
    elif match is None:
        raise AuthenticationFailed(f"DIGITAL_SIGNATURE: unknown AlgorithmIdentifier {alg_id.hex()}")
    else:
        (kind, h), pss = match, False
    if kind != fam:
        raise AuthenticationFailed(f"DIGITAL_SIGNATURE: {kind} signature but the peer's key is {fam}")
    if accepted is not None and h not in accepted:
        raise AuthenticationFailed(f"DIGITAL_SIGNATURE: hash {h.name} was not announced")
    if fam == "ed25519":
        public_key.verify(sig, octets)
    elif pss:
        public_key.verify(sig, octets, padding.PSS(padding.MGF1(_HASH[h]()), _HASH[h]().digest_size), _HASH[h]())
    elif fam == "rsa":
        public_key.verify(sig, octets, padding.PKCS1v15(), _HASH[h]())
    else:
        public_key.verify(sig, octets, ec.ECDSA(_HASH[h]()))


def verify_psk(prf: Prf, secret: bytes, octets: bytes, auth_data: bytes) -> None:
    """Check a SHARED_KEY_MIC AUTH payload in constant time; AuthenticationFailed on mismatch."""
    if not hmac.compare_digest(psk_auth(prf, secret, octets), auth_data):
        raise AuthenticationFailed("SHARED_KEY_MIC: AUTH data does not match the shared secret")
