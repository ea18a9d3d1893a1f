"""AUTH payloads (RFC 7296 s2.15, RFC 4754, RFC 7427), identities and the test PKI."""
from __future__ import annotations

import datetime

import pytest

from harness.crypto import prf
from harness.errors import AuthenticationFailed, ConfigError
from harness.ike.auth import (SCHEMES, AuthMethod, HashAlg, Identity, IdType, default_signature, psk_auth, scheme_hash,
                              scheme_of, scheme_signature, sign_auth, signed_octets, verify_auth, verify_psk)
from harness.ike.certs import TestPki, check_peer_cert, new_key

P = prf("PRF_HMAC_SHA2_256")
OCTETS = signed_octets(b"IKE_SA_INIT message bytes", b"N" * 32, P, b"p" * 32, Identity.of("198.18.0.1"))


@pytest.fixture(scope="module")
def pki():
    return TestPki()


@pytest.fixture(scope="module")
def creds(pki):
    sans = ["198.18.0.1", "2001:db8::1", "moon.example", "moon@example"]
    return {k: pki.issue(f"CN=moon-{k},O=ipsec-interop", sans, k) for k in ("rsa2048", "p256", "p384", "p521", "ed25519")}


@pytest.mark.parametrize("text,id_type,data", [
    ("198.18.0.1", IdType.ID_IPV4_ADDR, bytes([198, 18, 0, 1])),
    ("2001:db8::1", IdType.ID_IPV6_ADDR, bytes.fromhex("20010db8000000000000000000000001")),
    ("moon.example", IdType.ID_FQDN, b"moon.example"),
    ("moon@example", IdType.ID_RFC822_ADDR, b"moon@example"),
])
def test_identity_of_text(text, id_type, data):
    i = Identity.of(text)
    assert (i.id_type, i.data) == (id_type, data) and str(i) == text
    assert Identity.from_body(i.body()) == i and i.body()[:4] == bytes([id_type, 0, 0, 0])


def test_identity_dn_round_trip():
    i = Identity.of("CN=moon,O=ipsec-interop")
    assert i.id_type == IdType.ID_DER_ASN1_DN and i.data[0] == 0x30 and str(i) == "CN=moon,O=ipsec-interop"


@pytest.mark.rfc(7296, "2.15", "MUST")
def test_signed_octets_layout():
    ident = Identity.of("moon.example")
    o = signed_octets(b"MSG", b"nonce", P, b"k" * 32, ident)
    assert o == b"MSG" + b"nonce" + P(b"k" * 32, bytes([2, 0, 0, 0]) + b"moon.example")


@pytest.mark.rfc(7296, "2.15", "MUST")
def test_psk_auth_definition_and_mismatch():
    a = psk_auth(P, b"secret", OCTETS)
    assert a == P(P(b"secret", b"Key Pad for IKEv2"), OCTETS)
    verify_psk(P, b"secret", OCTETS, a)
    with pytest.raises(AuthenticationFailed) as e:
        verify_psk(P, b"other", OCTETS, a)
    assert e.value.notify == "AUTHENTICATION_FAILED"
    with pytest.raises(AuthenticationFailed):
        verify_psk(P, b"secret", OCTETS + b"x", a)


CASES = [
    ("rsa2048", AuthMethod.RSA_SIG, None, False),
    ("p256", AuthMethod.ECDSA_SHA256_P256, None, False),
    ("p384", AuthMethod.ECDSA_SHA384_P384, None, False),
    ("p521", AuthMethod.ECDSA_SHA512_P521, None, False),
    ("rsa2048", AuthMethod.DIGITAL_SIGNATURE, HashAlg.SHA2_256, False),
    ("rsa2048", AuthMethod.DIGITAL_SIGNATURE, HashAlg.SHA2_512, False),
    ("rsa2048", AuthMethod.DIGITAL_SIGNATURE, HashAlg.SHA2_256, True),
    ("rsa2048", AuthMethod.DIGITAL_SIGNATURE, HashAlg.SHA2_384, True),
    ("p256", AuthMethod.DIGITAL_SIGNATURE, HashAlg.SHA2_256, False),
    ("p384", AuthMethod.DIGITAL_SIGNATURE, HashAlg.SHA2_384, False),
    ("ed25519", AuthMethod.DIGITAL_SIGNATURE, HashAlg.IDENTITY, False),
]


@pytest.mark.rfc(7427, "3", "MUST")
@pytest.mark.parametrize("kind,method,h,pss", CASES, ids=lambda x: getattr(x, "name", str(x)))
def test_signature_round_trip_and_tamper(creds, kind, method, h, pss):
    cred = creds[kind]
    data = sign_auth(method, cred.key, OCTETS, h, pss)
    pub = cred.cert.public_key()
    verify_auth(method, pub, OCTETS, data)
    with pytest.raises(AuthenticationFailed):
        verify_auth(method, pub, OCTETS + b"!", data)
    flipped = data[:-5] + bytes([data[-5] ^ 1]) + data[-4:]
    with pytest.raises(AuthenticationFailed):
        verify_auth(method, pub, OCTETS, flipped)
    other = creds["p256" if kind != "p256" else "p384"].cert.public_key()
    with pytest.raises(AuthenticationFailed):
        verify_auth(method, other, OCTETS, data)


@pytest.mark.rfc(7427, "3", "MUST")
def test_7427_layout_and_hash_policy(creds):
    data = sign_auth(AuthMethod.DIGITAL_SIGNATURE, creds["p256"].key, OCTETS, HashAlg.SHA2_256)
    assert data[0] == 12 and data[1:13] == bytes.fromhex("300a06082a8648ce3d040302")  # RFC 7427 A.3.1
    pub = creds["p256"].cert.public_key()
    verify_auth(14, pub, OCTETS, data, accepted_hashes=frozenset({HashAlg.SHA2_256}))
    with pytest.raises(AuthenticationFailed):
        verify_auth(14, pub, OCTETS, data, accepted_hashes=frozenset({HashAlg.SHA2_512}))
    with pytest.raises(AuthenticationFailed):
        verify_auth(14, pub, OCTETS, b"\x30" + data[1:])  # length octet beyond the data
    with pytest.raises(AuthenticationFailed):
        verify_auth(14, pub, OCTETS, data[:1] + b"\x30\x0a\x06\x08" + bytes(8) + data[13:])  # unknown OID


def test_default_signature_choice(creds):
    assert default_signature(creds["p256"].key, None)[0] == AuthMethod.ECDSA_SHA256_P256
    assert default_signature(creds["rsa2048"].key, None)[0] == AuthMethod.RSA_SIG
    assert default_signature(creds["p384"].key, frozenset({2, 3})) == (AuthMethod.DIGITAL_SIGNATURE, HashAlg.SHA2_384, False)
    assert default_signature(creds["ed25519"].key, None)[1] == HashAlg.IDENTITY
    with pytest.raises(ConfigError):
        sign_auth(AuthMethod.ECDSA_SHA384_P384, creds["p256"].key, OCTETS)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("kind", ["rsa2048", "p256", "p384", "p521", "ed25519"])
def test_each_scheme_signs_and_is_named_back(creds, scheme, kind):
    """A scheme name signs (or refuses the key with ConfigError), verifies, and scheme_of names the AUTH data back."""
    cred = creds[kind]
    family = {"rsa2048": ("legacy", "pkcs1", "pss"), "ed25519": ("ed25519",)}.get(kind, ("legacy", "ecdsa"))
    fits = scheme.split("-")[0] in family
    if not fits:
        with pytest.raises(ConfigError, match="cannot sign with a"):
            scheme_signature(scheme, cred.key)
        return
    method, h, pss = scheme_signature(scheme, cred.key)
    data = sign_auth(method, cred.key, OCTETS, h, pss)
    assert scheme_of(method, data) == scheme
    verify_auth(method, cred.cert.public_key(), OCTETS, data, frozenset({scheme_hash(scheme)}) if scheme != "legacy" else None)


def test_scheme_names_of_what_a_peer_may_send():
    assert scheme_of(AuthMethod.SHARED_KEY_MIC, b"x" * 32) == "psk"
    assert scheme_of(AuthMethod.DSS_SIG, b"") == "method-3"
    assert scheme_of(14, b"\x30") == "method-14-truncated"
    assert scheme_of(14, b"\x03\x30\x01\x00") == "method-14-300100"
    with pytest.raises(ConfigError, match="not one of legacy"):
        scheme_signature("dsa-sha1", None)


@pytest.mark.rfc(7296, "3.5", "MUST")
@pytest.mark.parametrize("text", ["198.18.0.1", "2001:db8::1", "moon.example", "moon@example", "CN=moon-p256,O=ipsec-interop"])
def test_cert_binds_each_id_type(pki, creds, text):
    cred = creds["p256"]
    pub = check_peer_cert(cred.cert_der, pki.ca_cert, Identity.of(text))
    assert pub.public_numbers() == cred.cert.public_key().public_numbers()


def test_cert_rejections(pki, creds):
    cred = creds["p256"]
    with pytest.raises(AuthenticationFailed, match="not bound"):
        check_peer_cert(cred.cert_der, pki.ca_cert, Identity.of("sun.example"))
    with pytest.raises(AuthenticationFailed, match="trusted CA"):
        check_peer_cert(cred.cert_der, TestPki(name="CN=ipsec-interop test CA,O=ipsec-interop").ca_cert,
                        Identity.of("moon.example"))
    with pytest.raises(AuthenticationFailed, match="not valid"):
        check_peer_cert(cred.cert_der, pki.ca_cert, Identity.of("moon.example"),
                        now=datetime.datetime(2019, 1, 1, tzinfo=datetime.timezone.utc))
    with pytest.raises(AuthenticationFailed):
        check_peer_cert(b"\x30\x03\x02\x01\x00", pki.ca_cert, Identity.of("moon.example"))
    with pytest.raises(ConfigError):
        new_key("dsa1024")


@pytest.fixture(scope="module")
def chain():
    """A root that allows one intermediate, two intermediates under it, and an end certificate of each."""
    root = TestPki(name="CN=chain root,O=ipsec-interop", path_length=1)
    a, b = root.intermediate("CN=chain A,O=ipsec-interop"), root.intermediate("CN=chain B,O=ipsec-interop")
    return root, a, b, a.issue("CN=moon,O=ipsec-interop", ["moon.example"]), b.issue("CN=sun,O=ipsec-interop", ["sun.example"])


def _der(cert) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding
    return cert.public_bytes(Encoding.DER)


@pytest.mark.rfc(7296, "3.6", "MUST")
def test_cert_chain_through_an_intermediate(chain):
    root, a, b, moon, sun = chain
    assert moon.chain == (a.ca_cert,) and a.root is root.ca_cert and root.chain == ()
    pub = check_peer_cert(moon.cert_der, root.ca_cert, Identity.of("moon.example"),
                          intermediates=[_der(b.ca_cert), _der(a.ca_cert)])  # any order, a stranger among them
    assert pub.public_numbers() == moon.cert.public_key().public_numbers()
    with pytest.raises(AuthenticationFailed, match="no intermediate CA certificate sent issues it"):
        check_peer_cert(moon.cert_der, root.ca_cert, Identity.of("moon.example"))  # the intermediate not sent
    with pytest.raises(AuthenticationFailed, match="no intermediate"):
        check_peer_cert(moon.cert_der, root.ca_cert, Identity.of("moon.example"), intermediates=[_der(b.ca_cert)])


def test_cert_chain_rejections(chain):
    root, a, _, moon, _ = chain
    other = TestPki(name="CN=chain root,O=ipsec-interop", path_length=1)  # the same name, another key
    with pytest.raises(AuthenticationFailed, match="intermediate CA CN=chain A.*does not verify"):
        check_peer_cert(moon.cert_der, other.ca_cert, Identity.of("moon.example"), intermediates=[_der(a.ca_cert)])
    tight = TestPki(name="CN=tight root,O=ipsec-interop")  # path length 0: no intermediate below it
    deep = tight.intermediate("CN=deep,O=ipsec-interop").issue("CN=moon,O=ipsec-interop", ["moon.example"])
    with pytest.raises(AuthenticationFailed, match="pathLenConstraint"):
        check_peer_cert(deep.cert_der, tight.ca_cert, Identity.of("moon.example"), intermediates=[_der(deep.chain[0])])
    leaf_ca = root.issue("CN=not a CA,O=ipsec-interop", ["ca.example"])  # an end certificate posing as an issuer
    fake = TestPki(name="CN=not a CA,O=ipsec-interop")
    fake.ca_key = leaf_ca.key
    fake.ca_cert = leaf_ca.cert
    forged = fake.issue("CN=moon,O=ipsec-interop", ["moon.example"])
    with pytest.raises(AuthenticationFailed, match="not a CA certificate"):
        check_peer_cert(forged.cert_der, root.ca_cert, Identity.of("moon.example"), intermediates=[leaf_ca.cert_der])
    with pytest.raises(AuthenticationFailed, match="intermediate CA .* not valid"):
        check_peer_cert(moon.cert_der, root.ca_cert, Identity.of("moon.example"), intermediates=[_der(a.ca_cert)],
                        now=datetime.datetime(2047, 1, 1, tzinfo=datetime.timezone.utc))
