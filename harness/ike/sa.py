"""IKE SA and Child SA state held by the sans-IO endpoint (harness.ike.endpoint).

An `IkeSa` holds one IKE SA's SPIs, negotiated suite, SK_* keys, nonces, the IKE_SA_INIT
messages its AUTH payloads sign, its request window and response cache, and its Child SAs.
A `ChildSa` holds one Child SA pair's SPIs, suite, keys and selectors and exports them in
the form the ESP/AH data plane and the keys files take (harness.keys.IpsecSaKeys).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from harness.crypto import KePrivate
from harness.ike.export import IkeSaKeys
from harness.ike.keys import ChildKeys, IkeKeys
from harness.ike.proposals import Proposal, Protocol, Suite
from harness.ike.sk import Reassembler
from harness.ike.ts import TrafficSelector
from harness.ike.window import RequestWindow, ResponseCache
from harness.keys.model import IpsecSaKeys

Address = tuple[str, int]


class State(Enum):
    """Where an IKE SA is in its life."""

    INIT_SENT = "IKE_SA_INIT sent"
    INIT_DONE = "IKE_SA_INIT done"
    AUTH_SENT = "IKE_AUTH sent"
    ESTABLISHED = "established"
    REKEYED = "rekeyed (replaced, waiting for delete)"
    DELETING = "delete sent"
    DELETED = "deleted"


@dataclass
class ChildSa:
    """One Child SA pair: inbound SPI (ours), outbound SPI (the peer's), suite, keys, selectors."""

    protocol: Protocol
    mode: str
    spi_in: bytes
    spi_out: bytes
    suite: Suite
    keys: ChildKeys
    we_initiated: bool  # we were the initiator of the exchange that created it
    ts_local: tuple[TrafficSelector, ...]
    ts_remote: tuple[TrafficSelector, ...]
    nonces: tuple[bytes, bytes] = (b"", b"")  # (Ni, Nr) of the creating exchange
    udp_encap: bool = False
    rekeyed: bool = False  # replaced by a rekey, awaiting deletion
    additional_ts_possible: bool = False  # the responder said ADDITIONAL_TS_POSSIBLE (initiator side)
    peer_tfc_padding: bool = True  # False: the peer sent ESP_TFC_PADDING_NOT_SUPPORTED (RFC 7296 s3.10.1)

    def sa_keys(self, local: str, remote: str) -> tuple[IpsecSaKeys, IpsecSaKeys]:
        """(inbound, outbound) SAs with addresses: the initiator->responder keys protect what the initiator sends."""
        enc_in, int_in = (self.keys.encr_r, self.keys.integ_r) if self.we_initiated else (self.keys.encr_i, self.keys.integ_i)
        enc_out, int_out = (self.keys.encr_i, self.keys.integ_i) if self.we_initiated else (self.keys.encr_r, self.keys.integ_r)
        s = self.suite
        common = dict(protocol="esp" if self.protocol == Protocol.ESP else "ah", mode=self.mode,
                      encryption=s.encr.name if s.encr else None, integrity=s.integ.name if s.integ else None, esn=s.esn)
        inbound = IpsecSaKeys(spi=int.from_bytes(self.spi_in, "big"), src=remote, dst=local,
                              encryption_key=enc_in, integrity_key=int_in, **common)
        outbound = IpsecSaKeys(spi=int.from_bytes(self.spi_out, "big"), src=local, dst=remote,
                               encryption_key=enc_out, integrity_key=int_out, **common)
        return inbound, outbound


@dataclass
class Pending:
    """A request we sent and what to do with its response."""

    kind: str  # "init", "auth", "create_child", "rekey_child", "rekey_ike", "delete_child", "delete_ike", "info"
    data: dict = field(default_factory=dict)


@dataclass
class IkeSa:
    """One IKE SA as this endpoint sees it."""

    original_initiator: bool
    spi_i: bytes
    spi_r: bytes
    local: Address
    remote: Address
    state: State
    window: RequestWindow
    responses: ResponseCache
    suite: Suite | None = None
    keys: IkeKeys | None = None
    ni: bytes = b""
    nr: bytes = b""
    ke_private: KePrivate | None = None
    offered: list[Proposal] = field(default_factory=list)
    init_request: bytes = b""  # the IKE_SA_INIT request as sent (what the initiator's AUTH signs)
    init_response: bytes = b""  # the IKE_SA_INIT response as sent (what the responder's AUTH signs)
    cookie: bytes = b""
    peer_id: str = ""
    peer_hashes: frozenset[int] = frozenset()
    peer_auth: str = ""  # the peer's AUTH as a scheme name (harness.ike.auth.scheme_of)
    peer_fragmentation: bool = False
    peer_childless: bool = False  # the peer sent N(CHILDLESS_IKEV2_SUPPORTED) in IKE_SA_INIT (RFC 6023)
    childless: bool = False  # initiator: IKE_AUTH without a Child SA was asked for (RFC 6023)
    peer_window: int = 1
    nat_local: bool = False
    nat_remote: bool = False
    children: dict[bytes, ChildSa] = field(default_factory=dict)  # by inbound SPI
    pending: dict[int, Pending] = field(default_factory=dict)  # by Message ID of our request
    probes: set[int] = field(default_factory=set)  # Message IDs of bent requests sent once (IkeEndpoint.probe)
    queue: list = field(default_factory=list)  # requests waiting for room in the window
    first_child: dict = field(default_factory=dict)  # IKE_AUTH's Child SA negotiation context
    reassembler: Reassembler = field(default_factory=Reassembler)  # SKF fragments being collected (RFC 7383)
    created_at: float = 0.0
    delete_after_response: str = ""  # non-empty: remove the SA once this response is sent (the reason)
    rekey: dict = field(default_factory=dict)  # simultaneous-rekey bookkeeping (RFC 7296 s2.8.1, s2.8.2)

    @property
    def local_spi(self) -> bytes:
        """Our SPI: SPIi when we are the original initiator, SPIr otherwise."""
        return self.spi_i if self.original_initiator else self.spi_r

    @property
    def ike_keys(self) -> IkeSaKeys:
        """The SA's keys in export form (JSON ike_sas / Wireshark ikev2_decryption_table)."""
        k, s = self.keys, self.suite
        return IkeSaKeys(self.spi_i, self.spi_r, s.encr.name, s.key_bits, k.sk_ei, k.sk_er,
                         s.integ.name if s.integ else None, k.sk_ai, k.sk_ar)

    def child_by_out(self, spi_out: bytes) -> ChildSa | None:
        """The Child SA whose outbound (peer's) SPI this is."""
        return next((c for c in self.children.values() if c.spi_out == spi_out), None)
