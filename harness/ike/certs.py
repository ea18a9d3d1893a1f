"""Test PKI for IKEv2 signature authentication: a CA and end-entity certificates made per run with `cryptography`.

End-entity certificates carry a SubjectAltName for each identity asked for (IPv4/IPv6
address, FQDN, RFC822) and the subject DN, so every IKE ID type can be checked.
`check_peer_cert` is what an IKE endpoint runs on a received CERT payload: the chain to
the trust anchor, the validity period at the (injected) time, and ID-to-certificate binding.
"""
from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
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
    chain: tuple[x509.Certificate, ...] = ()  # intermediate CAs from the cert's issuer up, sent as more CERT payloads

    @property
    def cert_der(self) -> bytes:
        """The certificate as CERT payload data (encoding 4)."""
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def chain_der(self) -> tuple[bytes, ...]:
        """The intermediate CA certificates as CERT payload data, the cert's issuer first."""
        return tuple(c.public_bytes(serialization.Encoding.DER) for c in self.chain)


class TestPki:
    """A throw-away CA (ECDSA P-256 by default) issuing end-entity certificates, or an intermediate CA of another
    (`TestPki.intermediate`): its `chain` is then the intermediates from itself up to, not including, the root."""

    __test__ = False  # not a pytest class

    def __init__(self, ca_kind: str = "p256", name: str = "CN=ipsec-interop test CA,O=ipsec-interop",
                 path_length: int | None = 0, issuer: TestPki | None = None) -> None:
        self.ca_key = new_key(ca_kind)
        subject = x509.Name.from_rfc4514_string(name)
        _NAMES[subject.public_bytes()] = subject
        signer = issuer.ca_key if issuer else self.ca_key
        self.ca_cert = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(issuer.ca_cert.subject if issuer else subject)
            .public_key(self.ca_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(_EPOCH).not_valid_after(_EPOCH + datetime.timedelta(days=365 * (25 if issuer else 30)))
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(signer, _sig_hash(signer))
        )
        self.chain: tuple[x509.Certificate, ...] = (self.ca_cert, *issuer.chain) if issuer else ()
        self.root: x509.Certificate = issuer.root if issuer else self.ca_cert

    def intermediate(self, name: str, kind: str = "p256", path_length: int | None = 0) -> TestPki:
        """An intermediate CA issued by this CA (which needs a path length above 0, or none, to issue it)."""
        return TestPki(kind, name, path_length, issuer=self)

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
        return Credential(key, builder.sign(self.ca_key, _sig_hash(self.ca_key)), tuple(identities), self.chain)


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


def _verify_issued(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when issuer's key verifies cert's signature."""
    pub = issuer.public_key()
    try:
        if isinstance(pub, ec.EllipticCurvePublicKey):
            pub.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
        elif isinstance(pub, rsa.RSAPublicKey):
            pub.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm)
        else:
            pub.verify(cert.signature, cert.tbs_certificate_bytes)
    except (InvalidSignature, TypeError, ValueError):
        return False
    return True


def _valid_at(cert: x509.Certificate, now: datetime.datetime, what: str) -> None:
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise AuthenticationFailed(f"{what} {cert.subject.rfc4514_string()} not valid at {now.isoformat()}")


def _ca_constraints(ca: x509.Certificate, below: int) -> None:
    """AuthenticationFailed unless ca may issue certificates with `below` intermediates under it (RFC 5280 s4.2.1.9)."""
    try:
        bc = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is None or not bc.ca:
        raise AuthenticationFailed(f"{ca.subject.rfc4514_string()} is not a CA certificate (basicConstraints cA)")
    if bc.path_length is not None and below > bc.path_length:
        raise AuthenticationFailed(f"CA {ca.subject.rfc4514_string()} allows {bc.path_length} intermediate(s) below "
                                   f"it (pathLenConstraint), the chain has {below}")
    try:
        ku = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not ku.key_cert_sign:
        raise AuthenticationFailed(f"CA {ca.subject.rfc4514_string()} lacks keyCertSign")


def check_peer_cert(cert_der: bytes, ca_cert: x509.Certificate, identity: Identity,
                    now: datetime.datetime | None = None, intermediates: Sequence[bytes] = ()):
    """The peer's public key after checking the chain to the trust anchor ca_cert (through the intermediate CA
    certificates given, DER, in any order: RFC 7296 s3.6 lets them come in more CERT payloads), each issuer's
    signature, CA constraints and validity, and the ID binding; AuthenticationFailed otherwise."""
    try:
        cert = x509.load_der_x509_certificate(cert_der)
        pool = [x509.load_der_x509_certificate(d) for d in intermediates]
    except ValueError as e:
        raise AuthenticationFailed(f"CERT payload is not an X.509 certificate: {e}") from None
    now = now or datetime.datetime.now(datetime.timezone.utc)
    at, path = cert, []  # path: the intermediates from the end's issuer up
    while at.issuer != ca_cert.subject:
        up = next((c for c in pool if c.subject == at.issuer and c not in path and _verify_issued(at, c)), None)
        if up is None:
            raise AuthenticationFailed(f"certificate issuer {at.issuer.rfc4514_string()} is not the trusted CA "
                                       f"and no intermediate CA certificate sent issues it")
        path.append(up)
        at = up
    if not _verify_issued(at, ca_cert):
        raise AuthenticationFailed(f"{'certificate' if at is cert else 'intermediate CA ' + at.subject.rfc4514_string()} "
                                   f"signature does not verify with the trusted CA")
    for depth, ca in enumerate(path):
        _ca_constraints(ca, depth)
        _valid_at(ca, now, "intermediate CA")
    if path:
        _ca_constraints(ca_cert, len(path))
    _valid_at(cert, now, "certificate")
    if not any(identity.matches(i) for i in cert_identities(cert)):
        raise AuthenticationFailed(f"identity {identity} is not bound by the certificate")
    return cert.public_key()
