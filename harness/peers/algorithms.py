"""The transforms an end implements, read from its own algorithm list (never guessed).

strongSwan: vici's get-algorithms, the list `swanctl --list-algs` prints (sections encryption, integrity, aead, prf,
dh/ke; the same list serves the Child SA, with what charon's kernel interface installs although no plugin of its
lists it: KERNEL_ONLY_CHILD). Libreswan: `ipsec whack --status`, whose header lists
the IKE algorithms (encrypt with their IANA v2id, PRF, DH) and the kernel's ESP/AH algorithms; Libreswan's IKE
integrity algorithms are the HMACs/MACs of its PRF list (it builds both from one hash table), so INTEG is derived
from the PRF names. The built-in stack: harness.crypto. Names map to IANA IDs through algorithm_names.json; a
name the file does not know is kept out (and named in `unknown`), so a new peer version never breaks the read.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources

from harness.crypto import TransformType
from harness.errors import ParseError

_NAMES = json.loads(resources.files("harness.peers").joinpath("algorithm_names.json").read_text())
Id = tuple[TransformType, int]
# Child SA transforms charon's kernel-netlink interface installs (the kernel computes them) that no userspace plugin
# lists, so get-algorithms omits them: ENCR_NULL_AUTH_AES_GMAC (RFC 4543; measured: strongSwan 5.9 and 6.0 negotiate
# aes128gmac/aes256gmac and their kernels carry it as rfc4543(gcm(aes)))
KERNEL_ONLY_CHILD: frozenset[Id] = frozenset({(TransformType.ENCR, 21)})


@dataclass(frozen=True)
class Algorithms:
    """An end's transforms by (type, IANA id): for IKE SAs and for Child SAs; where the list came from."""

    ike: frozenset[Id]
    child: frozenset[Id]
    source: str
    unknown: tuple[str, ...] = field(default=())

    def missing(self, proposal: object, child: bool) -> list[str]:
        """The transforms of a harness.ike.proposals.Proposal this end does not list (INTEG/KE NONE always listed)."""
        have = self.child if child else self.ike
        out = []
        for t in proposal.transforms:  # type: ignore[attr-defined]
            if t.type == TransformType.ESN or (t.type in (TransformType.INTEG, TransformType.KE) and t.id == 0):
                continue
            if (t.type, t.id) not in have:
                out.append(f"{t.type.name}:{t}")
        return out


def parse_swanctl_list_algs(text: str) -> Algorithms:
    """`swanctl --list-algs` (strongSwan 5.9: "dh:", 6.0: "ke:") -> Algorithms; ParseError on a line of neither shape."""
    sections: dict[str, list[str]] = {}
    section = None
    for offset, line in enumerate(text.splitlines()):
        if not line.strip():
            continue
        if not line.startswith(" "):
            if not line.endswith(":"):
                raise ParseError("swanctl --list-algs", "section", offset, f"expected 'name:', got {line[:40]!r}")
            section = sections.setdefault(line[:-1], [])
            continue
        m = re.fullmatch(r"\s+([A-Z0-9_]+)\[[^\]]*\]", line)
        if not m or section is None:
            raise ParseError("swanctl --list-algs", "algorithm", offset, f"expected 'NAME[plugin]', got {line[:40]!r}")
        section.append(m.group(1))
    return strongswan_algorithms(sections, "swanctl --list-algs")


def strongswan_algorithms(sections: Mapping[str, Iterable[str]], source: str = "vici get-algorithms") -> Algorithms:
    """Algorithms from strongSwan's list by section (vici get-algorithms, or swanctl --list-algs parsed)."""
    names = _NAMES["strongswan"]
    types = {"encryption": TransformType.ENCR, "aead": TransformType.ENCR, "integrity": TransformType.INTEG,
             "prf": TransformType.PRF, "dh": TransformType.KE, "ke": TransformType.KE}
    have, unknown = set(), []
    for section, algs in sections.items():
        if section not in types:
            continue
        table = names["ke" if section == "dh" else section]
        for name in algs:
            if name in table:
                have.add((types[section], table[name]))
            else:
                unknown.append(f"{section}:{name}")
    ids = frozenset(have)
    return Algorithms(ids, ids | KERNEL_ONLY_CHILD, source, tuple(unknown))


_LSW = re.compile(r"^(?:000 )?algorithm (IKE encrypt|IKE PRF|IKE DH Key Exchange|ESP encrypt|AH/ESP auth): (.*)$")


def parse_whack_status(text: str) -> Algorithms:
    """The algorithm lines of `ipsec whack --status` (Libreswan 4.x with "000 " prefixes, 5.x) -> Algorithms."""
    names = _NAMES["libreswan"]
    ike, child, unknown = set(), set(), []
    for line in text.splitlines():
        m = _LSW.match(line.strip())
        if not m:
            continue
        kind, rest = m.groups()
        attrs = dict(kv.split("=", 1) for kv in rest.split(", ") if "=" in kv)
        name = attrs.get("name") or attrs.get("v2name", "")
        if kind == "IKE encrypt":
            if attrs.get("v2id", "-1").lstrip("-").isdigit() and int(attrs["v2id"]) > 0:
                ike.add((TransformType.ENCR, int(attrs["v2id"])))
            continue
        table, into, ttype = {"IKE PRF": ("prf", ike, TransformType.PRF), "IKE DH Key Exchange": ("ke", ike, TransformType.KE),
                              "ESP encrypt": ("esp_encrypt", child, TransformType.ENCR),
                              "AH/ESP auth": ("esp_auth", child, TransformType.INTEG)}[kind]
        if name in names[table]:
            into.add((ttype, names[table][name]))
            if kind == "IKE DH Key Exchange":  # pluto computes PFS for a Child SA itself: the same groups
                child.add((ttype, names[table][name]))
            if kind == "IKE PRF" and name in names["ike_integ_from_prf"]:
                ike.add((TransformType.INTEG, names["ike_integ_from_prf"][name]))
        elif name != "NONE":
            unknown.append(f"{kind}:{name}")
    if not ike:
        raise ParseError("ipsec whack --status", "algorithm", 0, "no 'algorithm IKE ...' line: not pluto's status")
    return Algorithms(frozenset(ike), frozenset(child), "ipsec whack --status", tuple(unknown))


def builtin_algorithms() -> Algorithms:
    """The built-in stack's transforms: every one harness.crypto implements (the same for IKE and Child SAs)."""
    from harness.crypto import ENCR, INTEG, KE, PRF

    ids = frozenset((ttype, i) for ttype, table in ((TransformType.ENCR, ENCR), (TransformType.PRF, PRF),
                                                     (TransformType.INTEG, INTEG), (TransformType.KE, KE))
                    for i in table)
    return Algorithms(ids, ids, "harness.crypto")
