"""Configuration of the built-in IKEv2 endpoint, and the tester's switchable misbehaviours (`Bugs`).

`IkeConfig` is one connection as both roles use it: identities, credentials, proposals,
traffic selectors, mode, and responder policies (cookies, window size, fragmentation).
`Bugs` follows BoGo's ProtocolBugs: every field off by default; a test turns one on to make
the built-in stack misbehave in one precise way while the peer under test stays untouched.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from harness.errors import ConfigError
from harness.ike.auth import Identity
from harness.ike.bend import Bend
from harness.ike.certs import Credential
from harness.ike.proposals import Proposal, Protocol, parse_proposals
from harness.ike.ts import TrafficSelector

CHILDLESS = ("never", "allow", "force")  # RFC 6023 policies (strongSwan's words)


@dataclass
class Bugs:
    """Misbehaviours of the built-in stack for negative tests (all off by default)."""

    wrong_auth: bool = False  # flip a bit of our AUTH data
    nonce_length: int | None = None  # send a nonce of this many octets (RFC 7296: 16..256)
    message_id_offset: int = 0  # add this to the Message ID of every request we send
    skip_natd: bool = False  # omit NAT_DETECTION_*_IP notifies in IKE_SA_INIT
    fake_natd: bool = False  # send NAT-D hashes of wrong addresses (simulate a NAT)
    ke_group_mismatch: int | None = None  # send a KE payload of this group instead of the proposed one
    bad_ke_data: bool = False  # send KE data of the right length that is not a valid public value
    omit_ke: bool = False  # omit the KE payload in IKE_SA_INIT / PFS CREATE_CHILD_SA
    extra_unknown_critical_payload: bool = False  # add an unknown payload with the critical bit set
    corrupt_icv: bool = False  # flip a bit in the integrity checksum of SK payloads we send
    choose_unoffered_transform: bool = False  # responder: answer with a transform the initiator did not offer
    ignore_cookie: bool = False  # initiator: do not retry with the COOKIE the responder asked for
    half_open: bool = False  # initiator: stop after the IKE_SA_INIT response, leaving the responder a half-open IKE SA
    no_retransmit: bool = False  # never retransmit requests
    ignore_requests: tuple[str, ...] = ()  # exchanges (e.g. "IKE_SA_INIT", "INFORMATIONAL") whose requests get no
    # answer and no processing; each arrival is reported (RequestIgnored), so a case sees the peer retransmit
    wrong_spi_r: bool = False  # initiator: put a wrong responder SPI in IKE_AUTH
    bends: tuple[tuple[str, Bend], ...] = ()  # (exchange and direction, e.g. "IKE_AUTH request", Bend): every such message we send
    refuse_child: str | None = None  # responder: refuse every Child SA with this error notify (e.g. FAILED_CP_REQUIRED)
    auth_error_without_id: str | None = None  # responder: answer IKE_AUTH with only this error notify, no IDr/AUTH
    # the first sending of each fragmented request, as ops on its fragment numbers 1..n in order: ("reverse", 0),
    # ("duplicate", k) sends k twice, ("drop", k) leaves k out; its retransmissions resend all in order (RFC 7383 s2.6)
    fragment_sends: tuple[tuple[str, int], ...] = ()
    childless_unannounced: bool = False  # initiator: a childless IKE_AUTH even if the responder did not announce RFC 6023
    collide_rekeys: str | None = None  # once: cross the peer's next rekey request with our own rekey of the same SA,
    # our exchange holding the lowest nonce ("ours-lowest") or theirs ("theirs-lowest") (harness.ike.collide)
    nonce_fill: int | None = None  # once: the next nonce we make is this octet repeated (taken by harness.ike.collide)
    rekey_on_delete: bool = False  # once: before answering the peer's next Delete of one of our Child SAs, send our
    # rekey of that Child SA, so the two requests cross (RFC 7296 s2.25.1; harness.ike.collide.cross_delete)

    def __post_init__(self) -> None:
        for op in self.fragment_sends:
            if not (isinstance(op, (tuple, list)) and len(op) == 2 and op[0] in FRAGMENT_OPS and isinstance(op[1], int)
                    and (op[0] == "reverse" or op[1] >= 1)):
                raise ConfigError(f"Bugs: key 'fragment_sends': {op!r} is not (op, fragment number >= 1) with op one of "
                                  f"{', '.join(FRAGMENT_OPS)}")


FRAGMENT_OPS = ("reverse", "duplicate", "drop")


def fragment_order(total: int, ops: tuple[tuple[str, int], ...]) -> list[int]:
    """The fragment numbers (1..total) a first sending carries, in order, after Bugs.fragment_sends ops."""
    out = list(range(1, total + 1))
    for op, k in ops:
        if op != "reverse" and k > total:
            raise ConfigError(f"Bugs.fragment_sends {op} {k}: the message has {total} fragments")
        if op == "reverse":
            out.reverse()
        elif op == "duplicate":
            out.insert(out.index(k) + 1, k)
        elif op == "drop":
            out.remove(k)
    return out


@dataclass
class IkeConfig:
    """One connection: who we are, how we authenticate, what we propose and accept."""

    local_id: Identity
    remote_id: Identity | None = None  # None: accept any authenticated peer identity
    psk: bytes | None = None
    credential: Credential | None = None  # our key and certificate for signature AUTH
    trust_anchor: object | None = None  # x509.Certificate of the CA that signs peers' certificates
    send_cert: bool = True
    ike_proposals: list[Proposal] = field(default_factory=lambda: parse_proposals("aes128gcm16-prfsha256-ecp256", "ike"))
    child_proposals: list[Proposal] = field(default_factory=lambda: parse_proposals("aes128gcm16-esn-noesn", "esp"))
    mode: str = "tunnel"  # or "transport"
    local_ts: list[TrafficSelector] = field(default_factory=list)  # empty: our address (transport) / anything
    remote_ts: list[TrafficSelector] = field(default_factory=list)
    max_children: int | None = None  # responder: refuse more Child SAs with NO_ADDITIONAL_SAS
    single_pair: bool = False  # responder narrows to one selector pair (ADDITIONAL_TS_POSSIBLE)
    require_cookie: bool = False  # responder: demand a COOKIE before keeping state
    cookie_secret: bytes = b""  # responder: secret for cookies (random if empty)
    window_size: int = 1  # announced with SET_WINDOW_SIZE when > 1
    initial_contact: bool = False  # initiator: N(INITIAL_CONTACT) in IKE_AUTH, as after a restart (RFC 7296 s2.4)
    rfc7427: bool = True  # announce SIGNATURE_HASH_ALGORITHMS (False: legacy AUTH methods only)
    signature_hashes: tuple[int, ...] | None = None  # the hashes announced (RFC 7427 s4); None: every one we verify
    signature: str | None = None  # sign by this scheme (harness.ike.auth.SCHEMES); None: default_signature's choice
    fragmentation: bool = True  # announce IKEV2_FRAGMENTATION_SUPPORTED and fragment when both do
    fragment_size: int = 1280  # largest IKE datagram before fragmenting (RFC 7383 s2.5.1)
    tfc_padding: bool = True  # False: send ESP_TFC_PADDING_NOT_SUPPORTED
    childless: str = "allow"  # RFC 6023, as strongSwan's option: never | allow (announce, accept; initiate childless
    #                           when asked) | force (always initiate childless; refuse if the responder did not announce)
    half_open_timeout: float = 30.0  # responder: forget an IKE SA whose IKE_AUTH does not come within this
    retransmit_timeout: float = 1.0
    retransmit_tries: int = 5
    nonce_size: int = 32
    bugs: Bugs = field(default_factory=Bugs)

    def __post_init__(self) -> None:
        if self.psk is None and self.credential is None:
            raise ConfigError("IkeConfig: need psk or credential to authenticate")
        if self.mode not in ("tunnel", "transport"):
            raise ConfigError(f"IkeConfig: key 'mode': {self.mode!r} is not tunnel or transport")
        if any(p.protocol != Protocol.IKE for p in self.ike_proposals):
            raise ConfigError("IkeConfig: key 'ike_proposals': all must be IKE proposals")
        if any(p.protocol == Protocol.IKE for p in self.child_proposals):
            raise ConfigError("IkeConfig: key 'child_proposals': AH or ESP proposals only")
        if self.childless not in CHILDLESS:
            raise ConfigError(f"IkeConfig: key 'childless': {self.childless!r} is not one of {', '.join(CHILDLESS)}")
        if not 16 <= self.nonce_size <= 256:
            raise ConfigError("IkeConfig: key 'nonce_size': RFC 7296 s3.9 allows 16..256 octets")
