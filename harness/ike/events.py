"""What the sans-IO IKEv2 endpoint reports to its driver: SAs to install or remove, port switches, failures."""
from __future__ import annotations

from dataclasses import dataclass

from harness.keys.model import IpsecSaKeys
from harness.ike.export import IkeSaKeys
from harness.ike.ts import TrafficSelector


@dataclass(frozen=True)
class IkeSaEstablished:
    """IKE_AUTH completed (or an IKE SA rekey did): the SA's keys and the authenticated peer."""

    keys: IkeSaKeys
    peer_id: str
    rekeyed_from: bytes | None = None  # old SPIi|SPIr when this SA replaces one
    peer_auth: str = ""  # how the peer authenticated: psk or a signature scheme (harness.ike.auth.scheme_of)
    started: float | None = None  # its exchange's start on the endpoint's clock: IKE_SA_INIT's (sent, or received as
    # responder), or for a rekey our CREATE_CHILD_SA request's first sending when we sent it
    we_initiated: bool | None = None  # we sent the request of the exchange that made it (None: not said)


@dataclass(frozen=True)
class ChildlessIkeSa:
    """An IKE SA was made without a Child SA (RFC 6023): its IKE_AUTH request and response carried no SA, TSi or TSr."""

    initiator: bool  # we sent the IKE_AUTH request
    peer_announced: bool  # the peer sent N(CHILDLESS_IKEV2_SUPPORTED) in IKE_SA_INIT


@dataclass(frozen=True)
class ChildSaEstablished:
    """A Child SA to install: inbound and outbound SAs (harness.keys form), selectors, and the SA it replaces."""

    inbound: IpsecSaKeys
    outbound: IpsecSaKeys
    ts_local: tuple[TrafficSelector, ...]
    ts_remote: tuple[TrafficSelector, ...]
    udp_encap: bool = False
    rekeyed_spi: int | None = None  # inbound SPI of the Child SA this one rekeys
    peer_tfc_padding: bool = True  # False: send no TFC padding on outbound (peer sent ESP_TFC_PADDING_NOT_SUPPORTED)
    we_initiated: bool | None = None  # we sent the request of the exchange that made it (None: not said)
    started: float | None = None  # our request's first sending on the endpoint's clock, when we sent it


@dataclass(frozen=True)
class ChildSaDeleted:
    """A Child SA to remove, by its inbound and outbound SPIs."""

    protocol: str
    spi_in: int
    spi_out: int


@dataclass(frozen=True)
class Informational:
    """An INFORMATIONAL exchange completed (RFC 7296 s1.4): who asked, and what the peer's message carried.

    payloads: the peer's request (asked_by_us False) or its response (True), as "D" per Delete payload and the
    type of each notify; empty for a liveness check and its answer (s2.4)."""

    asked_by_us: bool
    message_id: int
    payloads: tuple[str, ...]


@dataclass(frozen=True)
class ProbeSent:
    """A request bent on purpose went out (IkeEndpoint.probe): its datagrams, which the wire check must not fault."""

    message_id: int
    datagrams: tuple[bytes, ...]


@dataclass(frozen=True)
class ProbeAnswered:
    """The peer answered a request bent on purpose (IkeEndpoint.probe): protected (it took the Message ID) or not,
    and what the answer carried (payloads as in Informational; "undecodable: ..." when it could not be read)."""

    message_id: int
    protected: bool
    payloads: tuple[str, ...]


@dataclass(frozen=True)
class RequestIgnored:
    """A request left unanswered on purpose (Bugs.ignore_requests): when it arrived and its bytes, so a case sees
    each retransmission (RFC 7296 s2.1)."""

    exchange: str
    message_id: int
    spi_i: bytes
    at: float  # arrival on the endpoint's clock
    datagram: bytes


@dataclass(frozen=True)
class ResentAnswered:
    """The peer answered a request sent again byte for byte (IkeEndpoint.resend_last): the first answer's datagram
    and this one, which RFC 7296 s2.1 wants to be the same retransmitted response."""

    exchange: str
    message_id: int
    first: bytes
    again: bytes


@dataclass(frozen=True)
class IkeSaDeleted:
    """The IKE SA is gone (deleted, replaced by a rekey, or failed); reason says why."""

    spi_i: bytes
    spi_r: bytes
    reason: str


@dataclass(frozen=True)
class NatDetected:
    """NAT detection result: switch IKE (and ESP, UDP-encapsulated) to port 4500 when either side is behind a NAT."""

    local_behind_nat: bool
    remote_behind_nat: bool


@dataclass(frozen=True)
class ExchangeFailed:
    """An exchange failed: the error notify sent or received and a message."""

    exchange: str
    notify: str
    message: str
    received: bool  # True: the peer sent the error notify; False: we did


@dataclass(frozen=True)
class KeRetry:
    """The responder's INVALID_KE_PAYLOAD asked for another KE group; the request goes again with it (RFC 7296 s1.2, s1.3)."""

    exchange: str  # IKE_SA_INIT or CREATE_CHILD_SA
    group: int     # the group the responder asked for


@dataclass(frozen=True)
class CookieDemanded:
    """The responder answered an IKE_SA_INIT request with N(COOKIE) (RFC 7296 s2.6): it had none, or a stale one."""

    stale: bool  # the request carried a cookie that did not verify (another Ni, SPIi or address, or an old secret)
    group: int   # the KE group of the request


@dataclass(frozen=True)
class CookieRetry:
    """The responder answered our IKE_SA_INIT request with N(COOKIE); the request goes again with it (RFC 7296 s2.6)."""

    cookie: bytes


@dataclass(frozen=True)
class PeerDead:
    """A request was retransmitted to the limit without an answer."""

    exchange: str
    message_id: int


@dataclass(frozen=True)
class FragmentsSent:
    """A message went out as SKF fragments (RFC 7383 s2.5): the datagram size of each, fragment 1 first."""

    exchange: str
    message_id: int
    response: bool
    sizes: tuple[int, ...]


@dataclass(frozen=True)
class FragmentReceived:
    """An SKF fragment arrived and verified (RFC 7383 s2.6): its number, the total announced, its datagram size."""

    exchange: str
    message_id: int
    response: bool
    number: int
    total: int
    size: int
