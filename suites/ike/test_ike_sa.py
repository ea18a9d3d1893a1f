"""The IKE SA's life against every peer (RFC 7296): full life driven by the built-in initiator, and
certificate authentication between every pair of ends.

Each case is a declaration on the `pair` fixture (harness.cases): the Connection is the one description
of the case; verdicts, evidence and the wire check come from the fixture.
"""
from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization as ser

from pathlib import Path

from harness.cases.pair import WAIT
from harness.cases.table import CaseRow, Expect, Requirement, table_params
from harness.errors import LabError, NotEstablished, PeerFault, Refused
from harness.ike.events import ChildSaEstablished, IkeSaEstablished

pytestmark = [pytest.mark.lab, pytest.mark.root]


@pytest.mark.ends("builtin>peer")
@pytest.mark.rfc(7296, "1.3", "MUST")
@pytest.mark.parametrize("ike,esp,mode", [("aes128gcm16-prfsha256-ecp256", "aes128gcm16", "transport"),
                                          ("aes256-sha256-modp2048", "aes256-sha256", "tunnel")],
                         ids=["gcm-transport", "cbc-tunnel"])
def test_full_life(pair, ike, esp, mode):
    pair.establish(pair.connection(ike_proposals=[ike], child_proposals=[esp], mode=mode))
    end = pair.builtin
    mark = len(end.events)
    end.request(lambda ep: ep.create_child(ep.established()[0]))  # a second Child SA (RFC 7296 s1.3.1)
    end.wait_event(lambda e: isinstance(e, ChildSaEstablished), mark, WAIT, "CREATE_CHILD_SA for a second Child SA")
    pair.wait(lambda: sum(len(s.children) for s in pair.ike_sas(pair.responder)) == 2, "the peer holds both Child SAs")
    end.rekey("case", "child")
    end.rekey("case", "ike")
    pair.wait(lambda: len(pair.ike_sas(pair.responder)) == 1 and len(pair.ike_sas(pair.responder)[0].children) == 2,
              "the peer moved both Child SAs to the new IKE SA")
    pair.traffic(count=2)
    pair.terminate()


def _pem(obj) -> str:
    if hasattr(obj, "private_bytes"):
        return obj.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()).decode()
    return obj.public_bytes(ser.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def ca():
    """One RSA CA for the module, issuing every key kind."""
    from harness.ike.certs import TestPki

    return TestPki(ca_kind="rsa2048", name="CN=ipsec-interop cases CA,O=ipsec-interop")


@pytest.mark.rfc(7296, "2.15", "MUST")
@pytest.mark.rfc(7427, "3", "MUST")
@pytest.mark.parametrize("kind", ["p256", "rsa2048"])
def test_certificate_authentication(pair, ca, kind):
    """Both ends sign with a certificate of one CA, between every pair of ends (the reference peers with each other)."""
    _authenticate(pair, ca, kind)


@pytest.mark.ends("builtin>peer", "peer>builtin")
@pytest.mark.rfc(7296, "2.15", "MUST")
@pytest.mark.rfc(7427, "3", "MUST")
@pytest.mark.parametrize("kind", ["p384", "p521", "rsa3072", "ed25519"])
def test_certificate_key_kinds(pair, ca, kind):
    """Every other key kind against the built-in end, which checks each signature itself: ECDSA P-384/P-521 (methods
    10, 11 or RFC 7427), RSA 3072, Ed25519 (RFC 8420; UNIMPLEMENTED where a peer cannot sign with it)."""
    _authenticate(pair, ca, kind)


def _authenticate(pair, ca, kind: str) -> None:
    conn, responder = _signed(pair, {e.name: ca for e in pair.ends}, ca, kind)
    pair.establish(conn, responder)
    pair.traffic(count=2)
    pair.terminate()


@pytest.fixture(scope="module")
def stranger():
    """A CA no end trusts."""
    from harness.ike.certs import TestPki

    return TestPki(ca_kind="rsa2048", name="CN=ipsec-interop untrusted CA,O=ipsec-interop")


@pytest.mark.ends("builtin>peer", "peer>builtin")
@pytest.mark.rfc(7296, "2.15", "MUST")
@pytest.mark.parametrize("untrusted", ["initiator", "responder"])
def test_a_certificate_from_an_untrusted_ca_is_refused(pair, ca, stranger, untrusted):
    """An end whose certificate was issued by a CA the other does not trust is refused (RFC 7296 s2.15, s2.21.2), in
    either role (_refused)."""
    bad = pair.initiator if untrusted == "initiator" else pair.responder
    conn, responder = _signed(pair, {e.name: stranger if e is bad else ca for e in pair.ends}, ca, "rsa2048")
    _refused(pair, conn, responder, untrusted, "a certificate no CA it trusts issued")


@pytest.mark.ends("builtin>peer", "peer>builtin")
@pytest.mark.rfc(7296, "2.15", "MUST")
@pytest.mark.parametrize("kind", ["rsa2048", "p256"])
def test_a_signature_that_does_not_verify_is_refused(pair, ca, kind):
    """The built-in end signs its AUTH payload and flips one bit of the signature (Bugs.wrong_auth), with a certificate
    the peer trusts, as initiator and as responder; the peer must refuse it (RFC 7296 s2.15, s2.21.2; _refused)."""
    from harness.ike.config import Bugs

    conn, responder = _signed(pair, {e.name: ca for e in pair.ends}, ca, kind)
    pair.builtin.bugs = Bugs(wrong_auth=True)
    try:
        _refused(pair, conn, responder, "initiator" if pair.initiator.builtin else "responder",
                 "an AUTH signature that does not verify")
    finally:
        pair.builtin.bugs = Bugs()


def _refused(pair, conn, responder, bad: str, what: str) -> None:
    """The case where the `bad` end's authentication must fail: a bad initiator is answered AUTHENTICATION_FAILED with no
    IKE SA left; a bad responder's IKE_AUTH response is rejected and the initiator keeps no IKE SA and no Child SA
    (telling the responder is a MAY: Libreswan does not, and revives the connection, so the responder may still hold
    what it answered)."""
    if bad == "initiator":
        row = CaseRow("authentication-refused", Requirement(7296, "2.15", "MUST"), {}, Expect("refused", "AUTHENTICATION_FAILED"),
                      None, __file__, {k: v for k, v in responder.to_dict().items() if k in ("auth", "local_id", "remote_id")})
        pair.expect(row, conn)
        return
    ini = pair.initiator
    try:
        pair.establish(conn, responder)
    except (NotEstablished, Refused):
        pass
    else:
        raise PeerFault(f"{ini.name} established an IKE SA with a responder that authenticated with {what}",
                        "RFC 7296 s2.15 MUST")
    pair.wait(lambda: not any(s.established for s in pair.ike_sas(ini)) and not (
        ini.adapter.xfrm_state() if not ini.builtin else ini.adapter.children),
        f"{ini.name} holds no IKE SA and no Child SA after rejecting the responder's {what}")


@pytest.mark.ends("builtin>peer", "peer>builtin")
@pytest.mark.parametrize("row", table_params(Path(__file__).with_name("signatures.json")))
def test_signature_scheme(pair, ca, row, record_property):
    """Both ends sign by the row's scheme; the built-in end announced only its hash (none for legacy), verified the
    peer's AUTH with it and names the scheme the peer used, which must be the row's (suites/ike/signatures.json)."""
    scheme = row.connection["auth"]["signature"]
    conn, responder = _signed(pair, {e.name: ca for e in pair.ends}, ca, row.key, scheme)
    pair.establish(conn, responder)
    builtin, peer = sorted(pair.ends, key=lambda e: not e.builtin)
    used = [e.peer_auth for e in pair.events(builtin) if isinstance(e, IkeSaEstablished)]
    record_property("peer_signed", ", ".join(used))
    if used != [scheme]:
        raise LabError(f"{peer.name} configured for {scheme} signed with {used}, each allowed by what the built-in "
                       "end announced: the adapter did not express the scheme")
    pair.traffic(count=1)
    pair.terminate()


def _signed(pair, issuers: dict, trusted, kind: str, signature: str | None = None):
    """The initiator's Connection and the responder's, each end with a certificate for its address from its issuer,
    trusting `trusted` for the other end, signing by `signature` (None: each end's own choice)."""
    addr = {e.name: pair.address(e) for e in pair.ends}
    cred = {n: issuers[n].issue(f"CN=end-{kind}-{i},O=ipsec-interop", [a], kind) for i, (n, a) in enumerate(addr.items())}

    def auth(name: str) -> dict:
        return {"method": "pubkey", "cert_pem": _pem(cred[name].cert), "key_pem": _pem(cred[name].key),
                "ca_pem": _pem(trusted.ca_cert), "signature": signature}

    ini, res = pair.initiator.name, pair.responder.name
    conn = pair.connection(auth=auth(ini), local_id=addr[ini], remote_id=addr[res])
    responder = pair.connection(auth=auth(res), local_id=addr[res], remote_id=addr[ini],
                                local_addr=addr[res], remote_addr=addr[ini])
    return conn, responder
