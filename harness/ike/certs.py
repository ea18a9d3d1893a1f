"""Test PKI for IKEv2 signature authentication: a CA and end-entity certificates made per run with `cryptography`.

End-entity certificates carry a SubjectAltName for each identity asked for (IPv4/IPv6
address, FQDN, RFC822) and the subject DN, so every IKE ID type can be checked.
`check_peer_cert` is what an IKE endpoint runs on a received CERT payload: the chain to
the trust anchor, the validity period at the (injected) time, and ID-to-certificate binding.
"""
from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from harness.errors import AuthenticationFailed, ConfigError
from harness.ike.auth import Identity, IdType

CERT_X509_SIGNATURE = 4  # CERT payload encoding (RFC 7296 s3.6)
_EPOCH = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)


def dn_der(text: str) -> bytes:
    """DER of an RFC 4514 distinguished name ("CN=moon,O=Lab"); ConfigError if malformed."""
    try:
        name = x509.Name.from_rfc4514_string(text)
    except ValueError as e:
        raise ConfigError(f"distinguished name {text!r}: {e}") from None
    _NAMES[name.public_bytes()] = name
    return name.public_bytes()


def dn_der_in_order(text: str) -> bytes:
    """DER of a DN written first RDN first, as strongSwan and Libreswan write it ("CN=moon,O=Lab": CN, then O),
    the reverse of an RFC 4514 string; ConfigError if malformed."""
    try:
        parsed = x509.Name.from_rfc4514_string(text)
    except ValueError as e:
        raise ConfigError(f"distinguished name {text!r}: {e}") from None
    name = x509.Name(list(reversed(parsed.rdns)))
    _NAMES[name.public_bytes()] = name
    return name.public_bytes()


def _tlvs(der: bytes) -> list[tuple[int, bytes]]:
    """The DER TLVs one after another in der (tag, contents); ValueError when malformed."""
    out, i = [], 0
    while i < len(der):
        if i + 2 > len(der):
            raise ValueError("truncated TLV")
        tag, n, i = der[i], der[i + 1], i + 2
        if n & 0x80:
            k = n & 0x7F
            n, i = int.from_bytes(der[i:i + k], "big"), i + k
        if i + n > len(der):
            raise ValueError("TLV longer than its container")
        out.append((tag, der[i:i + n]))
        i += n
    return out


_STRINGS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x14: "latin-1", 0x1E: "utf-16-be"}


def _dn_key(der: bytes) -> tuple:
    """A DN as comparable data: per RDN, its (OID, value) pairs, string values case- and space-folded (RFC 5280 s7.1)."""
    ((tag, name),) = _tlvs(der)
    if tag != 0x30:
        raise ValueError("not a SEQUENCE")
    rdns = []
    for set_tag, rdn in _tlvs(name):
        pairs = []
        for _, atv in _tlvs(rdn):
            (_, oid), (vtag, value) = _tlvs(atv)
            text = value.decode(_STRINGS[vtag]) if vtag in _STRINGS else value.hex()
            pairs.append((oid, " ".join(text.split()).casefold()))
        rdns.append((set_tag, tuple(sorted(pairs))))
    return tuple(rdns)


def dn_equal(a: bytes, b: bytes) -> bool:
    """True when two DER DNs name the same entity under RFC 5280 s7.1 (string type, case and spacing aside)."""
    if a == b:
        return True
    try:
        return _dn_key(a) == _dn_key(b)
    except (ValueError, KeyError):
        return False


def dn_text(der: bytes) -> str:
    """RFC 4514 text of a DER DN seen in this process (built here or read from a certificate), else its hex."""
    name = _NAMES.get(der)  # cryptography has no public DER loader for a bare Name
    return name.rfc4514_string() if name is not None else "DN:" + der.hex()


_NAMES: dict[bytes, x509.Name] = {}


KEY_KINDS = ("rsa2048", "rsa3072", "p256", "p384", "p521", "ed25519")


def new_key(kind: str):
    """A fresh private key of one of KEY_KINDS."""
    if kind not in KEY_KINDS:
        raise ConfigError(f"unknown key kind {kind!r}; known: {', '.join(KEY_KINDS)}")
    if kind.startswith("rsa"):
        return rsa.generate_private_key(65537, int(kind[3:]))
    curves = {"p256": ec.SECP256R1, "p384": ec.SECP384R1, "p521": ec.SECP521R1}
    if kind in curves:
        return ec.generate_private_key(curves[kind]())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ConfigError(f"unknown key kind {kind!r}; known: rsa2048, rsa3072, p256, p384, p521, ed25519")


def _sig_hash(key):
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


@dataclass
class Credential:
    """An end entity's private key, its certificate and the identities the certificate binds."""

    key: object
    cert: x509.Certificate
    identities: tuple[Identity, ...]

    @property
    def cert_der(self) -> bytes:
        """The certificate as CERT payload data (encoding 4)."""
        return self.cert.public_bytes(serialization.Encoding.DER)


class TestPki:
    """A throw-away CA (ECDSA P-256 by default) issuing end-entity certificates."""

    __test__ = False  # not a pytest class

    def __init__(self, ca_kind: str = "p256", name: str = "CN=ipsec-interop test CA,O=ipsec-interop") -> None:
        self.ca_key = new_key(ca_kind)
        subject = x509.Name.from_rfc4514_string(name)
        _NAMES[subject.public_bytes()] = subject
        self.ca_cert = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(self.ca_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(_EPOCH).not_valid_after(_EPOCH + datetime.timedelta(days=365 * 30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(self.ca_key, _sig_hash(self.ca_key))
        )

    def issue(self, subject: str, sans: list[str], kind: str = "p256", key=None) -> Credential:
        """A credential for subject (RFC 4514 DN) with SubjectAltNames from IP/FQDN/RFC822 identity texts."""
        key = key or new_key(kind)
        name = x509.Name.from_rfc4514_string(subject)
        _NAMES[name.public_bytes()] = name
        general: list[x509.GeneralName] = []
        identities = [Identity(IdType.ID_DER_ASN1_DN, name.public_bytes())]
        for text in sans:
            ident = Identity.of(text)
            identities.append(ident)
            if ident.id_type in (IdType.ID_IPV4_ADDR, IdType.ID_IPV6_ADDR):
                general.append(x509.IPAddress(ipaddress.ip_address(text)))
            elif ident.id_type == IdType.ID_RFC822_ADDR:
                general.append(x509.RFC822Name(text))
            elif ident.id_type == IdType.ID_FQDN:
                general.append(x509.DNSName(text))
            else:
                raise ConfigError(f"SAN {text!r} is not an address, FQDN or RFC822 name")
        builder = (
            x509.CertificateBuilder().subject_name(name).issuer_name(self.ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(_EPOCH).not_valid_after(_EPOCH + datetime.timedelta(days=365 * 20))
        )
        if general:
            builder = builder.add_extension(x509.SubjectAlternativeName(general), critical=False)
        return Credential(key, builder.sign(self.ca_key, _sig_hash(self.ca_key)), tuple(identities))


def ca_key_hash(ca_cert: x509.Certificate) -> bytes:
    """CERTREQ Certification Authority entry: SHA-1 of the CA's SubjectPublicKeyInfo (RFC 7296 s3.7)."""
    spki = ca_cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    h = hashes.Hash(hashes.SHA1())
    h.update(spki)
    return h.finalize()


def cert_identities(cert: x509.Certificate) -> set[Identity]:
    """Every identity a certificate binds: its subject DN and each IP/DNS/RFC822 SubjectAltName."""
    ids = {Identity(IdType.ID_DER_ASN1_DN, cert.subject.public_bytes())}
    _NAMES.setdefault(cert.subject.public_bytes(), cert.subject)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ids
    for ip in san.get_values_for_type(x509.IPAddress):
        ids.add(Identity(IdType.ID_IPV4_ADDR if ip.version == 4 else IdType.ID_IPV6_ADDR, ip.packed))
    ids.update(Identity(IdType.ID_FQDN, d.encode()) for d in san.get_values_for_type(x509.DNSName))
    ids.update(Identity(IdType.ID_RFC822_ADDR, m.encode()) for m in san.get_values_for_type(x509.RFC822Name))
    return ids


def check_peer_cert(cert_der: bytes, ca_cert: x509.Certificate, identity: Identity,
                    now: datetime.datetime | None = None):
    """The peer's public key after checking issuer signature, validity and ID binding; AuthenticationFailed otherwise."""
    try:
        cert = x509.load_der_x509_certificate(cert_der)
    except ValueError as e:
        raise AuthenticationFailed(f"CERT payload is not an X.509 certificate: {e}") from None
    if cert.issuer != ca_cert.subject:
        raise AuthenticationFailed(f"certificate issuer {cert.issuer.rfc4514_string()} is not the trusted CA")
    ca_pub = ca_cert.public_key()
    try:
        if isinstance(ca_pub, ec.EllipticCurvePublicKey):
            ca_pub.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
        elif isinstance(ca_pub, rsa.RSAPublicKey):
            ca_pub.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm)
        else:
            ca_pub.verify(cert.signature, cert.tbs_certificate_bytes)
    except (InvalidSignature, TypeError, ValueError):
        raise AuthenticationFailed("certificate signature does not verify with the trusted CA") from None
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise AuthenticationFailed(f"certificate not valid at {now.isoformat()}")
    if not any(identity.matches(i) for i in cert_identities(cert)):
        raise AuthenticationFailed(f"identity {identity} is not bound by the certificate")
    return cert.public_key()
