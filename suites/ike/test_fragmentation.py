"""Certificate chains through an intermediate CA (RFC 7296 s2.15, s3.6, s3.7) and IKEv2 fragmentation (RFC 7383).

Chains: one root (the only CA either end trusts) issues an intermediate CA per end, which issues that end's
certificate; each end sends its intermediate in a second CERT payload (Auth.chain_pem), and the built-in end checks
the whole chain itself (harness.ike.certs.check_peer_cert). Fragmentation: RSA 3072 keys and intermediates make an
IKE_AUTH of about 2.5 kB, over every end's fragment size (strongSwan charon.fragment_size 1280 by default, Libreswan
its IPv4 576 rule, the built-in end 1280), so both directions go as SKF fragments; the built-in end reports each
fragment it sent (FragmentsSent) and each one it received and verified (FragmentReceived). Negotiation: with one end's
fragmentation off, nothing is fragmented (RFC 7383 s2.3). Robustness (fragmentation.json): the built-in initiator's
first sending of its fragmented IKE_AUTH reordered, with a fragment duplicated, or with one lost and the whole message
retransmitted (s2.6); every fragment is a valid SKF message, so the wire check has nothing to excuse.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization as ser

from harness.datafile import load_json
from harness.cases.table import CaseRow, Expect, Requirement
from harness.errors import LabError, NotEstablished, PeerFault, Refused
from harness.ike.events import FragmentReceived, FragmentsSent
from harness.report.checks import should

pytestmark = [pytest.mark.lab, pytest.mark.root]
TABLE = Path(__file__).with_name("fragmentation.json")


def _pem(obj) -> str:
    if hasattr(obj, "private_bytes"):
        return obj.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()).decode()
    return obj.public_bytes(ser.Encoding.PEM).decode()


class Chains:
    """One root CA allowing one intermediate, and an intermediate CA per end (made on first use), of one key kind."""

    def __init__(self, kind: str, label: str = "") -> None:
        from harness.ike.certs import TestPki

        self.kind, self.label = kind, f"{kind}{label}"
        self.root = TestPki(ca_kind=kind, name=f"CN=ipsec-interop chain root {self.label},O=ipsec-interop", path_length=1)
        self.cas: dict[str, object] = {}

    def ca(self, end: str):
        """The intermediate CA that issues end's certificate."""
        if end not in self.cas:
            self.cas[end] = self.root.intermediate(f"CN=ipsec-interop {end} CA {self.label},O=ipsec-interop", self.kind)
        return self.cas[end]


@pytest.fixture(scope="module")
def chains():
    """Chains by key kind (and label), shared by the module's cases."""
    made: dict[str, Chains] = {}

    def get(kind: str, label: str = "") -> Chains:
        return made.setdefault(kind + label, Chains(kind, label))
    return get


def _chained(pair, chains: Chains, fragmentation: dict[str, str] | None = None):
    """The initiator's Connection and the responder's: each end's certificate from its own intermediate, the
    intermediate sent with it (chain_pem), only the root trusted; fragmentation per end name (default yes)."""
    addr = {e.name: pair.address(e) for e in pair.ends}
    cred = {n: chains.ca(n).issue(f"CN=end {n},O=ipsec-interop", [a], chains.kind) for n, a in addr.items()}
    frag = fragmentation or {}

    def fields(name: str) -> dict:
        c = cred[name]
        return {"auth": {"method": "pubkey", "cert_pem": _pem(c.cert), "key_pem": _pem(c.key),
                         "ca_pem": _pem(chains.root.ca_cert), "chain_pem": "".join(_pem(x) for x in c.chain)},
                "fragmentation": frag.get(name, "yes")}

    ini, res = pair.initiator.name, pair.responder.name
    conn = pair.connection(local_id=addr[ini], remote_id=addr[res], **fields(ini))
    responder = pair.connection(local_id=addr[res], remote_id=addr[ini], local_addr=addr[res], remote_addr=addr[ini],
                                **fields(res))
    return conn, responder


# ---- certificate chains ------------------------------------------------------------------------------------------

@pytest.mark.rfc(7296, "3.6", "MUST")
@pytest.mark.rfc(7296, "2.15", "MUST")
@pytest.mark.parametrize("kind", ["p256", "rsa2048"])
def test_certificate_chain_through_an_intermediate_ca(pair, chains, kind):
    """Each end's certificate is issued by its own intermediate CA under the one root both trust; each sends its
    intermediate in a second CERT payload and authenticates the other's chain, between every pair of ends."""
    conn, responder = _chained(pair, chains(kind))
    pair.establish(conn, responder)  # the built-in end checks the peer's chain itself: without the intermediate, no AUTH
    pair.traffic(count=2)
    pair.terminate()


@pytest.mark.ends("builtin>peer", "peer>builtin")
@pytest.mark.rfc(7296, "2.15", "MUST")
def test_a_certificate_without_its_intermediate_is_refused(pair, chains):
    """The built-in end sends its certificate without the intermediate CA that issued it (an intermediate no peer
    has seen before, so none can have kept it): the peer, trusting only the root, cannot build the chain and must
    refuse. As responder: AUTHENTICATION_FAILED and no IKE SA left; as initiator: it rejects the IKE_AUTH response and
    keeps no IKE SA and no kernel SA."""
    conn, responder = _chained(pair, chains("p256", " unsent"))
    bare = {e.name: not e.builtin for e in pair.ends}
    conn, responder = (c if bare[e.name] else dataclasses.replace(c, auth=dataclasses.replace(c.auth, chain_pem=None))
                       for c, e in ((conn, pair.initiator), (responder, pair.responder)))
    peer = next(e for e in pair.ends if not e.builtin)
    if peer is pair.responder:
        row = CaseRow("intermediate-not-sent", Requirement(7296, "2.15", "MUST"), {}, Expect("refused", "AUTHENTICATION_FAILED"),
                      None, __file__, {k: v for k, v in responder.to_dict().items() if k in ("auth", "local_id", "remote_id")})
        pair.expect(row, conn)
        return
    try:
        pair.establish(conn, responder)
    except (NotEstablished, Refused):
        pass
    else:
        raise PeerFault(f"{peer.name} established an IKE SA with a responder whose certificate chain it cannot build to "
                        f"the root it trusts (the intermediate CA was not sent)", "RFC 7296 s2.15 MUST")
    pair.wait(lambda: not any(s.established for s in pair.ike_sas(peer)) and not peer.adapter.xfrm_state(),
              f"{peer.name} holds no IKE SA and no Child SA after rejecting the responder's certificate")


# ---- fragmentation ------------------------------------------------------------------------------------------------

def _fragments(pair, record_property) -> tuple[list[FragmentsSent], list[FragmentReceived]]:
    """The built-in end's IKE_AUTH fragments of the case: what it sent, what it received (and verified)."""
    events = [e for end in pair.ends for e in pair.events(end)]
    sent = [e for e in events if isinstance(e, FragmentsSent) and e.exchange == "IKE_AUTH"]
    got = [e for e in events if isinstance(e, FragmentReceived) and e.exchange == "IKE_AUTH"]
    record_property("builtin_sent_fragments", [list(e.sizes) for e in sent])
    record_property("builtin_received_fragments", [(e.number, e.total, e.size) for e in got])
    return sent, got


@pytest.mark.ends("builtin>peer", "peer>builtin")
@pytest.mark.rfc(7383, "2.6", "MUST")
def test_ike_auth_is_fragmented_both_ways(pair, chains, record_property, request):
    """RSA 3072 certificates and intermediates: each end's IKE_AUTH message goes as SKF fragments, each at most the
    sender's fragment size, and the other end reassembles it (the built-in end reports every fragment it verified).
    A peer sending its IKE_AUTH whole is recorded NON-STRICT (whether to fragment is the sender's choice, RFC 7383
    s2.5.1); reassembling what the built-in end fragmented is what the IKE SA coming up shows."""
    conn, responder = _chained(pair, chains("rsa3072"))
    pair.establish(conn, responder)
    sent, got = _fragments(pair, record_property)
    peer = next(e for e in pair.ends if not e.builtin)
    if not sent:
        raise LabError("the built-in end sent its IKE_AUTH whole although both ends announced "
                       "IKEV2_FRAGMENTATION_SUPPORTED")
    if should(request, bool(got), "RFC 7383 s2.5", f"{peer.name} sent its IKE_AUTH message (about 2.5 kB) whole, not "
              f"as SKF fragments, although both ends announced IKEV2_FRAGMENTATION_SUPPORTED"):
        total = max(e.total for e in got)
        numbers = sorted({e.number for e in got if e.total == total})
        if numbers != list(range(1, total + 1)):
            raise PeerFault(f"{peer.name}'s IKE_AUTH fragments {numbers} do not cover 1..{total}", "RFC 7383 s2.5 MUST")
        record_property("peer_fragments", total)
        record_property("peer_largest_fragment", max(e.size for e in got))
    pair.traffic(count=2)
    pair.terminate()


@pytest.mark.ends("builtin>peer", "peer>builtin")
@pytest.mark.rfc(7383, "2.3", "MUST")
def test_no_fragmentation_unless_both_announce_it(pair, chains, record_property):
    """The peer has fragmentation off, so it does not send IKEV2_FRAGMENTATION_SUPPORTED: the built-in end must not
    fragment (its IKE_AUTH goes whole, IP-fragmented), and the IKE SA still comes up."""
    peer = next(e for e in pair.ends if not e.builtin)
    conn, responder = _chained(pair, chains("rsa3072"), {peer.name: "no"})
    pair.establish(conn, responder)
    sent, got = _fragments(pair, record_property)
    if sent:
        raise PeerFault(f"the built-in end fragmented its IKE_AUTH ({len(sent[0].sizes)} fragments) although "
                        f"{peer.name} did not announce IKEV2_FRAGMENTATION_SUPPORTED", "RFC 7383 s2.3 MUST")
    if got:
        raise PeerFault(f"{peer.name} sent SKF fragments with its fragmentation off and none announced by it",
                        "RFC 7383 s2.3 MUST")
    pair.traffic(count=1)
    pair.terminate()


def _rows() -> list:
    table = load_json(TABLE)
    out = []
    for row in table["sendings"]:
        rfc, section, level = row["rfc"]
        out.append(pytest.param(row, id=row["id"], marks=pytest.mark.rfc(rfc, section, level)))
    return out


@pytest.fixture
def builtin_knobs(pair):
    """The built-in end's bugs and config_overrides, put back after the case (the end is pooled)."""
    end = pair.builtin
    bugs, overrides = end.bugs, dict(end.config_overrides)
    yield end
    end.bugs = bugs
    end.config_overrides.clear()
    end.config_overrides.update(overrides)


@pytest.mark.ends("builtin>peer")
@pytest.mark.parametrize("row", _rows())
def test_fragments_sent_out_of_shape_are_reassembled(pair, chains, builtin_knobs, row, record_property):
    """The built-in initiator sends the first sending of its fragmented IKE_AUTH request as the row says (reordered,
    one fragment twice, or one fragment lost: then the whole message again after 1 s, RFC 7383 s2.6); the peer must
    reassemble it and establish."""
    builtin_knobs.bugs = dataclasses.replace(builtin_knobs.bugs, fragment_sends=tuple(tuple(op) for op in row["fragment_sends"]))
    builtin_knobs.config_overrides["fragment_size"] = row.get("fragment_size", 1280)
    conn, responder = _chained(pair, chains("rsa3072"))
    pair.establish(conn, responder)
    sent, _ = _fragments(pair, record_property)
    if not sent:
        raise LabError("the built-in end did not fragment its IKE_AUTH: the case did not happen")
    record_property("fragment_sends", row["fragment_sends"])
    pair.traffic(count=1)
    pair.terminate()
