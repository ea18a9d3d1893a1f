"""The state machine's view of an IKEv2 message: the header and the payloads it acts on, as plain values.

The state machine (harness.ike.endpoint and the exchange modules) builds and reads `Msg`
objects; `encode`, `decode` and `peek` translate them to and from datagrams with the codec
(harness.ike.message, harness.ike.payloads, harness.ike.sk), so no byte layout lives in the
state machine and no protocol logic lives in the codec. The tester's Bugs that concern
encoding become codec Bends here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from harness.addresses import ip_address
from harness.errors import IkeParseError, ParseError
from harness.ike import payloads as P
from harness.ike.auth import Identity
from harness.ike.bend import Bend
from harness.ike.message import Header, Message
from harness.ike.proposals import Proposal, Protocol, Transform
from harness.ike.sk import Reassembler, SkKeys, decrypt_message, fragment, protect
from harness.ike.ts import TrafficSelector

PARSE_ERRORS = (ParseError,)
UNKNOWN_PAYLOAD_TYPE = 200  # private-use payload type (RFC 7296 s3.2: 128-255) for Bugs.extra_unknown_critical_payload

IKE_SA_INIT, IKE_AUTH, CREATE_CHILD_SA, INFORMATIONAL = 34, 35, 36, 37
EXCHANGE_NAMES = {IKE_SA_INIT: "IKE_SA_INIT", IKE_AUTH: "IKE_AUTH", CREATE_CHILD_SA: "CREATE_CHILD_SA",
                  INFORMATIONAL: "INFORMATIONAL"}


def exchange_name(exchange: int) -> str:
    """The RFC 7296 s3.1 name of an exchange type, or its number."""
    return EXCHANGE_NAMES.get(exchange, str(exchange))


@dataclass
class Notify:
    """A Notify payload: type by RFC name, protocol ID and SPI (REKEY_SA, errors about a Child SA), data."""

    type: str
    data: bytes = b""
    protocol: int = 0
    spi: bytes = b""


@dataclass
class Delete:
    """A Delete payload: protocol ID (1 IKE, 2 AH, 3 ESP) and the SPIs."""

    protocol: int
    spis: list[bytes] = field(default_factory=list)


@dataclass
class Msg:
    """One IKEv2 message as the state machine sees it; payloads it does not use are absent."""

    exchange: int
    message_id: int
    response: bool
    initiator: bool  # the I flag: sent by the original initiator of the IKE SA
    spi_i: bytes
    spi_r: bytes
    sa: list[Proposal] | None = None
    ke: tuple[int, bytes] | None = None  # (group, key exchange data)
    nonce: bytes | None = None
    id_i: Identity | None = None
    id_r: Identity | None = None
    auth: tuple[int, bytes] | None = None  # (method, authentication data)
    certs: list[tuple[int, bytes]] = field(default_factory=list)  # (encoding, data)
    certreq: list[tuple[int, bytes]] = field(default_factory=list)
    ts_i: list[TrafficSelector] | None = None
    ts_r: list[TrafficSelector] | None = None
    notifies: list[Notify] = field(default_factory=list)
    deletes: list[Delete] = field(default_factory=list)
    unknown_critical: list[int] = field(default_factory=list)  # payload types received with the critical bit
    encrypted: bool = False  # True: payloads travel in SK (or SKF) and need the IKE SA's keys
    major_version: int = 2

    def notify(self, name: str) -> Notify | None:
        """The first Notify of this type, or None."""
        for n in self.notifies:  # a loop, not next(genexpr): the exchanges ask this several times per message
            if n.type == name:
                return n
        return None

    def notifies_of(self, name: str) -> list[Notify]:
        """Every Notify of this type."""
        return [n for n in self.notifies if n.type == name]

    @property
    def name(self) -> str:
        """Exchange name and direction, for messages and logs."""
        return f"{exchange_name(self.exchange)} {'response' if self.response else 'request'}"


# ---- translation to and from the codec ---------------------------------------------------------------

def sk_keys(sa, sending: bool) -> SkKeys:
    """The SK keys protecting what this endpoint sends (sending=True) or receives on the IKE SA."""
    by_initiator = sa.original_initiator == sending
    k, s = sa.keys, sa.suite
    return SkKeys(s.encr, k.sk_ei if by_initiator else k.sk_er, s.integ, k.sk_ai if by_initiator else k.sk_ar)


def _sa_payload(proposals: list[Proposal]) -> P.SA:
    return P.SA([P.Proposal(p.number, int(p.protocol), p.spi,
                            [P.Transform(int(t.type), t.id, [P.Attribute(P.KEY_LENGTH, t.key_bits)] if t.key_bits else [])
                             for t in p.transforms]) for p in proposals])


def _proposals(sa: P.SA) -> list[Proposal]:
    out = []
    for p in sa.proposals:
        if p.protocol not in (1, 2, 3):
            continue  # RFC 7296 s3.3.1: unknown protocols are skipped, not fatal
        ts = []
        for t in p.transforms:
            if t.type in (1, 2, 3, 4, 5):
                key = (t.type, t.id, t.key_length)
                x = _TRANSFORMS.get(key)
                if x is None:
                    x = Transform(*key)
                    if len(_TRANSFORMS) < 4096:
                        _TRANSFORMS[key] = x
                ts.append(x)
        out.append(Proposal(Protocol(p.protocol), tuple(ts), p.spi, p.number))
    return out


# Transforms are frozen values: the few that peers send are built once and shared (their frozen __init__ is slow)
_TRANSFORMS: dict[tuple[int, int, int | None], Transform] = {}


def _ts_payload(cls, selectors: list[TrafficSelector]):
    return cls([P.Selector(ip_address(s.start_addr), ip_address(s.end_addr), s.ip_protocol,
                           s.start_port, s.end_port) for s in selectors])


def _selectors(ts) -> list[TrafficSelector]:
    return [TrafficSelector(x.ts_type, x.ip_protocol, x.start_port, x.end_port, x.start_address.packed,
                            x.end_address.packed) for x in ts.selectors if isinstance(x, P.Selector)]


def _payloads(msg: Msg) -> list[P.Payload]:
    """The payload chain in RFC 7296 order (N(COOKIE) first; SA, KE, Nonce; IDs, CERT, AUTH; TS; N; D)."""
    cookie: list[P.Payload] = []
    rekey: list[P.Payload] = []
    errors: list[P.Payload] = []
    rest: list[P.Payload] = []
    for n in msg.notifies:
        note = P.Notify(n.type, n.data, n.protocol, n.spi)
        if n.type == "COOKIE":
            cookie.append(note)
        elif n.type == "REKEY_SA":
            rekey.append(note)
        elif note.is_error:
            errors.append(note)
        else:
            rest.append(note)
    out = cookie + rekey
    if msg.id_i is not None:
        out.append(P.IDi(msg.id_i.id_type, msg.id_i.data))
    out += [P.CERT(enc, data) for enc, data in msg.certs]
    out += [P.CERTREQ(enc, data) for enc, data in msg.certreq] if msg.exchange != IKE_SA_INIT else []
    if msg.id_r is not None:
        out.append(P.IDr(msg.id_r.id_type, msg.id_r.data))
    if msg.auth is not None:
        out.append(P.AUTH(msg.auth[0], msg.auth[1]))
    out += errors
    if msg.sa is not None:
        out.append(_sa_payload(msg.sa))
    if msg.ke is not None:
        out.append(P.KE(msg.ke[0], msg.ke[1]))
    if msg.nonce is not None:
        out.append(P.Nonce(msg.nonce))
    if msg.ts_i is not None:
        out.append(_ts_payload(P.TSi, msg.ts_i))
    if msg.ts_r is not None:
        out.append(_ts_payload(P.TSr, msg.ts_r))
    out += rest
    if msg.exchange == IKE_SA_INIT:
        out += [P.CERTREQ(enc, data) for enc, data in msg.certreq]
    out += [P.D(d.protocol, list(d.spis)) for d in msg.deletes]
    return out


def _bends(msg: Msg, bugs) -> list[Bend]:
    if bugs is None:
        return []
    out: list[Bend] = []
    if bugs.message_id_offset and not msg.response and msg.exchange != IKE_SA_INIT:
        out.append(Bend("message_id", delta=bugs.message_id_offset))
    if bugs.extra_unknown_critical_payload and not msg.response:
        out.append(Bend("insert_unknown", index=-1, value=UNKNOWN_PAYLOAD_TYPE, critical=True, data=b"bug",
                        inner=msg.encrypted))
    if bugs.corrupt_icv and msg.encrypted:
        out.append(Bend("sk_icv_flip", index=0))
    if bugs.bends:
        what = f"{exchange_name(msg.exchange)} {'response' if msg.response else 'request'}"
        out += [b for target, b in bugs.bends if target == what]
    return out


def encode(msg: Msg, keys: SkKeys | None, rng: Callable[[int], bytes], fragment_size: int = 0, bugs=None) -> list[bytes]:
    """The datagram(s) of msg: plain, SK-protected, or SKF fragments when larger than fragment_size (RFC 7383)."""
    header = Header(msg.spi_i, msg.spi_r, msg.exchange, msg.message_id, initiator=msg.initiator,
                    response=msg.response, major_version=msg.major_version)
    payloads, bends = _payloads(msg), _bends(msg, bugs)
    if not msg.encrypted:
        return [Message(header, payloads).encode(bends)]
    if keys is None:
        raise ParseError("IKE message", "SK", 28, "no keys to protect an encrypted message")
    whole = protect(header, payloads, keys, bends=bends, rng=rng)
    if fragment_size and len(whole) > fragment_size and msg.exchange != IKE_SA_INIT:
        return fragment(header, payloads, keys, fragment_size, bends=bends, rng=rng)
    return [whole]


def peek(data: bytes) -> Msg:
    """The header of a datagram as a payload-less Msg (IkeParseError if shorter than a header)."""
    h = Header.decode(data)
    return Msg(h.exchange_type, h.message_id, h.response, h.initiator, h.spi_i, h.spi_r,
               encrypted=h.next_payload in P.ENCRYPTED, major_version=h.major_version)


_KINDS = (P.Notify, P.SA, P.KE, P.Nonce, P.IDi, P.IDr, P.AUTH, P.CERT, P.CERTREQ, P.TSi, P.TSr, P.D, P.UnknownPayload)
_KIND_OF: dict[type, type | None] = {k: k for k in _KINDS}


def _kind(p: P.Payload) -> type | None:
    """The payload class of p among _KINDS (a subclass counts as its base, as isinstance would), or None."""
    try:
        return _KIND_OF[type(p)]
    except KeyError:
        kind = _KIND_OF[type(p)] = next((k for k in _KINDS if isinstance(p, k)), None)
        return kind


def decode(data: bytes, keys: SkKeys | None, reassembler: Reassembler | None) -> Msg | None:
    """The Msg of a datagram (opened with keys when it carries SK/SKF); None while SKF fragments are missing.

    Raises IkeParseError (with the Notify to answer) for malformed input, IntegrityError for a bad ICV.
    """
    if keys is None:
        message, encrypted = Message.decode(data), False
        chain = message.payloads
    else:
        opened = decrypt_message(data, keys, reassembler)
        if opened is None:
            return None
        message, encrypted = opened.message, opened.inner is not None
        chain = (opened.inner or []) if encrypted else opened.message.payloads
    h = message.header
    msg = Msg(h.exchange_type, h.message_id, h.response, h.initiator, h.spi_i, h.spi_r, encrypted=encrypted,
              major_version=h.major_version)
    for p in chain:  # the payload classes are disjoint: the order of these tests only saves time (Notify is most common)
        t = _kind(p)
        if t is P.Notify:
            msg.notifies.append(Notify(p.type_name, p.data, p.protocol, p.spi))
        elif t is P.SA:
            if msg.sa is not None:
                raise IkeParseError("SA", "Payload Type", p.offset, "more than one SA payload")
            msg.sa = _proposals(p)
        elif t is P.KE:
            msg.ke = (p.group, p.data)
        elif t is P.Nonce:
            msg.nonce = p.data
        elif t is P.IDi:
            msg.id_i = Identity(p.kind, p.data)
        elif t is P.IDr:
            msg.id_r = Identity(p.kind, p.data)
        elif t is P.AUTH:
            msg.auth = (p.kind, p.data)
        elif t is P.CERT:
            msg.certs.append((p.encoding, p.data))
        elif t is P.CERTREQ:
            msg.certreq.append((p.encoding, p.data))
        elif t is P.TSi:
            msg.ts_i = _selectors(p)
        elif t is P.TSr:
            msg.ts_r = _selectors(p)
        elif t is P.D:
            msg.deletes.append(Delete(p.protocol, list(p.spis)))
        elif t is P.UnknownPayload and p.critical:
            msg.unknown_critical.append(p.type)
    return msg
