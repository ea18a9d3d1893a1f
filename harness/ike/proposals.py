"""SA proposals (RFC 7296 s3.3): a neutral model, strongSwan's proposal syntax, responder selection, initiator checks.

A `Proposal` is what goes into an SA payload: a protocol, a SPI and transforms, each
transform a (type, IANA id, key length) triple. `select` is the responder's choice (RFC 7296
s2.7: the first of the initiator's proposals that local policy accepts, one transform per
type); `check_chosen` is the initiator's check of the answer. `Suite` turns one chosen
proposal into harness.crypto objects.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import IntEnum
from importlib import resources

from harness.crypto import Encr, Integ, KeGroup, Prf, TransformType, encr, integ, ke, prf
from harness.errors import ConfigError, NoProposalChosen


class Protocol(IntEnum):
    """Protocol ID of a proposal (RFC 7296 s3.3.1)."""

    IKE = 1
    AH = 2
    ESP = 3


@dataclass(frozen=True)
class Transform:
    """One transform: type, IANA id, and the Key Length attribute in bits (None when absent)."""

    type: TransformType
    id: int
    key_bits: int | None = None

    def __str__(self) -> str:
        names = {TransformType.ENCR: lambda: encr(self.id).name, TransformType.PRF: lambda: prf(self.id).name,
                 TransformType.INTEG: lambda: integ(self.id).name if self.id else "NONE",
                 TransformType.KE: lambda: ke(self.id).name if self.id else "NONE",
                 TransformType.ESN: lambda: "ESN" if self.id else "NO_ESN"}
        try:
            name = names[self.type]()
        except LookupError:
            name = str(self.id)
        return name + (f"_{self.key_bits}" if self.key_bits else "")


@dataclass(frozen=True)
class Proposal:
    """A proposal: protocol, SPI (empty in IKE_SA_INIT), ordered transforms, proposal number."""

    protocol: Protocol
    transforms: tuple[Transform, ...]
    spi: bytes = b""
    number: int = 1

    def of_type(self, t: TransformType) -> list[Transform]:
        """The transforms of one type, in preference order."""
        return [x for x in self.transforms if x.type == t]

    def __str__(self) -> str:
        return f"{self.protocol.name}:" + "/".join(str(t) for t in self.transforms)


_KW = json.loads(resources.files("harness.ike").joinpath("strongswan_proposals.json").read_text())


def parse_proposal(text: str, protocol: Protocol | str, number: int = 1) -> Proposal:
    """One strongSwan proposal ("aes128gcm16-prfsha256-ecp256") as a Proposal; ConfigError for unknown keywords."""
    protocol = Protocol[protocol.upper()] if isinstance(protocol, str) else protocol
    out: list[Transform] = []
    for kw in text.strip().lower().split("-"):
        if protocol == Protocol.AH and kw in _KW["ah_gmac"]:
            out.append(Transform(TransformType.INTEG, _KW["ah_gmac"][kw]))
        elif kw in _KW["encr"]:
            tid, bits = _KW["encr"][kw]
            out.append(Transform(TransformType.ENCR, tid, bits if encr(tid).key_bits else None))
        elif kw in _KW["integ"]:
            out.append(Transform(TransformType.INTEG, _KW["integ"][kw]))
        elif kw in _KW["prf"]:
            out.append(Transform(TransformType.PRF, _KW["prf"][kw]))
        elif kw in _KW["ke"]:
            out.append(Transform(TransformType.KE, _KW["ke"][kw]))
        elif kw in _KW["esn"]:
            out.append(Transform(TransformType.ESN, _KW["esn"][kw]))
        else:
            raise ConfigError(f"proposal {text!r}: unknown keyword {kw!r}")
    return _complete(text, protocol, out, number)


def _complete(text: str, protocol: Protocol, ts: list[Transform], number: int) -> Proposal:
    by = {t: [x for x in ts if x.type == t] for t in TransformType}
    aead = [encr(x.id).aead for x in by[TransformType.ENCR]]
    if any(aead) and not all(aead):
        raise ConfigError(f"proposal {text!r}: AEAD and classic encryption cannot share a proposal")
    if protocol == Protocol.AH:
        if by[TransformType.ENCR] or not by[TransformType.INTEG]:
            raise ConfigError(f"AH proposal {text!r}: integrity only")
    elif not by[TransformType.ENCR]:
        raise ConfigError(f"proposal {text!r}: no encryption algorithm")
    if aead and all(aead) and by[TransformType.INTEG]:
        raise ConfigError(f"proposal {text!r}: AEAD algorithms take no integrity algorithm")
    if protocol != Protocol.AH and not aead[0] and not by[TransformType.INTEG] and encr(by[TransformType.ENCR][0].id).family != "null":
        raise ConfigError(f"proposal {text!r}: no integrity algorithm for a non-AEAD cipher")
    if protocol == Protocol.IKE:
        if by[TransformType.ESN]:
            raise ConfigError(f"IKE proposal {text!r}: ESN applies to AH/ESP only")
        if not by[TransformType.PRF]:
            derived = [_KW["prf_from_integ"].get(str(x.id)) for x in by[TransformType.INTEG]]
            if not by[TransformType.INTEG] or None in derived:
                raise ConfigError(f"IKE proposal {text!r}: a PRF algorithm is mandatory here")
            ts += [Transform(TransformType.PRF, p) for p in dict.fromkeys(derived)]
        if not by[TransformType.KE]:
            raise ConfigError(f"IKE proposal {text!r}: no key exchange method")
    else:
        if by[TransformType.PRF]:
            raise ConfigError(f"{protocol.name} proposal {text!r}: PRFs apply to IKE only")
        if not by[TransformType.ESN]:
            ts.append(Transform(TransformType.ESN, 0))
    order = sorted(ts, key=lambda x: int(x.type))  # stable: keeps preference order within a type
    return Proposal(protocol, tuple(order), number=number)


def parse_proposals(text: str, protocol: Protocol | str) -> list[Proposal]:
    """Comma-separated strongSwan proposals, numbered 1, 2, ..."""
    return [parse_proposal(p, protocol, i + 1) for i, p in enumerate(x for x in text.split(",") if x.strip())]


_TYPES = tuple(TransformType)  # iterating the enum itself is slow, and the hot paths do it per message
_OPTIONAL_NONE = {TransformType.INTEG, TransformType.KE, TransformType.ESN}  # absent == the NONE (0) transform
_NONE = {t: Transform(t, 0) for t in _OPTIONAL_NONE}  # built once: frozen, so sharing them changes nothing


def _options(p: Proposal, t: TransformType, by_type: dict[int, list[Transform]] | None = None) -> list[Transform]:
    xs = p.of_type(t) if by_type is None else by_type.get(t, [])
    return xs or ([_NONE[t]] if t in _NONE else [])


def _by_type(p: Proposal) -> dict[int, list[Transform]]:
    """The proposal's transforms grouped by type, each group in preference order (of_type for every type at once)."""
    out: dict[int, list[Transform]] = {}
    for x in p.transforms:
        out.setdefault(x.type, []).append(x)
    return out


def _match(offered: Proposal, local: Proposal, prefer_ke: int | None) -> Proposal | None:
    chosen: list[Transform] = []
    theirs_by, ours_by = _by_type(offered), _by_type(local)
    for t in _TYPES:
        theirs, ours = _options(offered, t, theirs_by), _options(local, t, ours_by)
        if not theirs and not ours:
            continue
        common = [x for x in theirs if x in ours]
        if not common:
            return None
        if t == TransformType.KE and prefer_ke is not None:
            common.sort(key=lambda x: x.id != prefer_ke)
        pick = common[0]
        if t in theirs_by or pick.id != 0:
            chosen.append(pick)
    return Proposal(offered.protocol, tuple(chosen), offered.spi, offered.number)


def select(offered: list[Proposal], local: list[Proposal], prefer_ke: int | None = None) -> Proposal:
    """The responder's choice: the first offered proposal some local proposal accepts, one transform per type.

    prefer_ke, the group of the KE payload received, wins among acceptable groups so that no
    INVALID_KE_PAYLOAD round trip is needed. The result carries the initiator's number and SPI.
    """
    for o in offered:
        for mine in local:
            if mine.protocol == o.protocol:
                m = _match(o, mine, prefer_ke)
                if m is not None:
                    return m
    raise NoProposalChosen("no proposal acceptable: offered " + ", ".join(map(str, offered))
                           + "; accepted " + ", ".join(map(str, local)))


def check_chosen(offered: list[Proposal], chosen: list[Proposal]) -> Proposal:
    """The initiator's check of the responder's SA payload (RFC 7296 s2.7, s3.3.6); NoProposalChosen if it is invalid."""
    if len(chosen) != 1:
        raise NoProposalChosen(f"responder returned {len(chosen)} proposals, exactly one is allowed")
    c = chosen[0]
    match = [o for o in offered if o.number == c.number]
    if not match:
        raise NoProposalChosen(f"responder chose proposal #{c.number}, which was not offered")
    o = match[0]
    if o.protocol != c.protocol:
        raise NoProposalChosen(f"responder chose protocol {c.protocol.name} for proposal #{c.number} ({o.protocol.name} offered)")
    chosen_by, offered_by = _by_type(c), _by_type(o)
    for t in _TYPES:
        got = chosen_by.get(t, [])
        if len(got) > 1:
            raise NoProposalChosen(f"responder chose {len(got)} transforms of type {t.name}")
        if t in offered_by and not got:
            raise NoProposalChosen(f"responder chose no transform of type {t.name}, which was offered")
        if got and got[0] not in _options(o, t, offered_by):
            raise NoProposalChosen(f"responder chose {got[0]} ({t.name}), which was not offered in #{c.number}")
    if c.protocol != Protocol.IKE and len(c.spi) != 4:
        raise NoProposalChosen(f"responder's {c.protocol.name} SPI is {len(c.spi)} octets, expected 4")
    return c


@dataclass(frozen=True)
class Suite:
    """A chosen proposal's transforms as harness.crypto objects (None where not negotiated)."""

    protocol: Protocol
    encr: Encr | None = None
    key_bits: int | None = None
    integ: Integ | None = None
    prf: Prf | None = None
    ke: KeGroup | None = None
    esn: bool = False
    spi: bytes = field(default=b"")

    @classmethod
    def of(cls, p: Proposal) -> "Suite":
        """From a proposal holding at most one transform per type (a chosen one)."""
        one: dict[int, Transform] = {}
        for x in p.transforms:
            one.setdefault(x.type, x)  # the first of each type
        e, i, f, k, n = (one.get(TransformType.ENCR), one.get(TransformType.INTEG), one.get(TransformType.PRF),
                         one.get(TransformType.KE), one.get(TransformType.ESN))
        return cls(p.protocol, encr(e.id) if e else None, e.key_bits if e else None,
                   integ(i.id) if i and i.id else None, prf(f.id) if f else None,
                   ke(k.id) if k and k.id else None, bool(n and n.id), p.spi)


def with_spi(proposals: list[Proposal], spi: bytes) -> list[Proposal]:
    """The same proposals carrying one SPI (the sender's inbound SPI for AH/ESP, the new IKE SPI in a rekey)."""
    return [type(p)(p.protocol, p.transforms, spi, p.number) for p in proposals]  # dataclasses.replace, without its cost


def without_ke(proposals: list[Proposal]) -> list[Proposal]:
    """The proposals with their KE transforms removed (the first Child SA, negotiated in IKE_AUTH, has no KE)."""
    return [type(p)(p.protocol, tuple(t for t in p.transforms if t.type != TransformType.KE), p.spi, p.number)
            for p in proposals]  # dataclasses.replace, without its cost
