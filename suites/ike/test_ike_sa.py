"""The IKE SA's life against every peer (RFC 7296): full life driven by the built-in initiator, and
certificate authentication between every pair of ends.

Each case is a declaration on the `pair` fixture (harness.cases): the Connection is the one description
of the case; verdicts, evidence and the wire check come from the fixture.
"""
from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization as ser

from harness.cases.pair import WAIT
from harness.ike.events import ChildSaEstablished

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
    """One RSA CA for the module, issuing both key kinds: a second CA in one pluto session is left untrusted by
    the Libreswan adapter's NSS import (SEC_ERROR_UNTRUSTED_ISSUER, measured), a gap of ours noted in the README."""
    from harness.ike.certs import TestPki

    return TestPki(ca_kind="rsa2048", name="CN=ipsec-interop cases CA,O=ipsec-interop")


@pytest.mark.rfc(7296, "2.15", "MUST")
@pytest.mark.rfc(7427, "3", "MUST")
@pytest.mark.parametrize("kind", ["p256", "rsa2048"])
def test_certificate_authentication(pair, ca, kind):
    addr = {e.name: pair.address(e) for e in pair.ends}
    cred = {n: ca.issue(f"CN=end-{kind}-{i},O=ipsec-interop", [a], kind) for i, (n, a) in enumerate(addr.items())}

    def auth(name: str) -> dict:
        return {"method": "pubkey", "cert_pem": _pem(cred[name].cert), "key_pem": _pem(cred[name].key),
                "ca_pem": _pem(ca.ca_cert)}

    ini, res = pair.initiator.name, pair.responder.name
    conn = pair.connection(auth=auth(ini), local_id=addr[ini], remote_id=addr[res])
    responder = pair.connection(auth=auth(res), local_id=addr[res], remote_id=addr[ini],
                                local_addr=addr[res], remote_addr=addr[ini])
    pair.establish(conn, responder)
    pair.traffic(count=2)
    pair.terminate()
