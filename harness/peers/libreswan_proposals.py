"""strongSwan proposal syntax -> Libreswan ike=/esp=/ah= syntax, by IANA transform, from a checked table.

Each keyword is looked up in strongSwan's keyword table (harness/ike/strongswan_proposals.json) and the
resulting transform in Libreswan's token table (libreswan_algorithms.json, every entry checked with
`ipsec algparse` of Libreswan 4.10 and 5.2). What Libreswan cannot express raises UnsupportedProposal
naming the proposal and the keyword: e.g. an IKE integrity algorithm differing from the PRF (Libreswan's
ike= is ENCR-PRF-DH), AES-GMAC in AH, MODP768/1024 and the RFC 5114 groups, CCM in IKE.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

from harness.crypto import encr as encr_transform
from harness.errors import UnsupportedProposal
from harness.ike.proposals import parse_proposal

_SS = json.loads(resources.files("harness.ike").joinpath("strongswan_proposals.json").read_text())
_LSW = json.loads(resources.files("harness.peers").joinpath("libreswan_algorithms.json").read_text())
IMPL = "libreswan"


@dataclass(frozen=True)
class LibreswanAlgorithms:
    """The translation of one protocol's proposal list: the ike=/esp=/ah= value, pfs=yes|no, esn=yes|no|either."""

    value: str
    pfs: bool = False
    esn: str = "no"


def _classify(text: str, kw: str, protocol: str) -> tuple[str, str]:
    """(transform kind, table key) of one strongSwan keyword."""
    if protocol == "ah" and kw in _SS["ah_gmac"]:
        return "ah_gmac", str(_SS["ah_gmac"][kw])
    if kw in _SS["encr"]:
        tid, bits = _SS["encr"][kw]
        return "encr", f"{tid}/{bits if encr_transform(tid).key_bits else '-'}"
    for kind in ("integ", "prf", "ke", "esn"):
        if kw in _SS[kind]:
            return kind, str(_SS[kind][kw])
    raise UnsupportedProposal(IMPL, text, kw, "not a strongSwan proposal keyword")


def _one(text: str, protocol: str) -> tuple[str, bool, set[str]]:
    """(Libreswan proposal, uses a KE method, ESN keywords) for one strongSwan proposal."""
    parse_proposal(text, protocol)  # strongSwan's own rules first (ConfigError naming the proposal)
    what = {"ike": "IKE", "esp": "ESP", "ah": "AH"}[protocol]
    groups: dict[str, list[str]] = {"encr": [], "integ": [], "prf": [], "ke": []}
    integ_ids: list[tuple[str, str]] = []
    esn: set[str] = set()
    for kw in text.strip().lower().split("-"):
        kind, key = _classify(text, kw, protocol)
        if kind == "ah_gmac":
            raise UnsupportedProposal(IMPL, text, kw, "Libreswan has no AES-GMAC integrity for AH")
        if kind == "esn":
            esn.add("yes" if key == "1" else "no")
            continue
        if kind == "encr":
            token = _LSW["encr"][protocol].get(key)
        elif kind == "integ":
            token = _LSW["integ"][protocol].get(key)
            integ_ids.append((kw, key))
        else:
            token = _LSW[kind].get(key)
        if token is None:
            raise UnsupportedProposal(IMPL, text, kw, f"Libreswan does not support this {kind} transform in {what}")
        if token not in groups[kind]:
            groups[kind].append(token)
    if protocol == "ike":
        if groups["prf"] and integ_ids:
            derived = {_LSW["prf"].get(str(_SS["prf_from_integ"].get(i, "")), "") for _, i in integ_ids}
            if derived != set(groups["prf"]):
                bad = next((kw for kw, i in integ_ids
                            if _LSW["prf"].get(str(_SS["prf_from_integ"].get(i, "")), "") not in groups["prf"]), integ_ids[0][0])
                raise UnsupportedProposal(IMPL, text, bad, "Libreswan's ike= is ENCR-PRF-DH: IKE integrity is "
                                          "derived from the PRF and cannot be chosen apart from it")
        elif not groups["prf"]:
            groups["prf"] = list(dict.fromkeys(_LSW["prf"][str(_SS["prf_from_integ"][i])] for _, i in integ_ids))
        value = "-".join(["+".join(groups["encr"]), "+".join(groups["prf"]), "+".join(groups["ke"])])
    else:
        parts = ["+".join(groups["encr"])] if groups["encr"] else []
        if groups["integ"]:
            parts.append("+".join(groups["integ"]))
        value = "-".join(parts)
        if groups["ke"]:  # ';' before the KE: 'aes_gcm_c_128-dh19' would read dh19 as an integrity algorithm
            value += ";" + "+".join(groups["ke"])
    return value, bool(groups["ke"]), esn


def translate(proposals: Sequence[str], protocol: str) -> LibreswanAlgorithms:
    """Libreswan's ike=/esp=/ah= value (plus pfs and esn settings) for strongSwan-syntax proposals of one protocol."""
    if protocol not in ("ike", "esp", "ah"):
        raise UnsupportedProposal(IMPL, ",".join(proposals), protocol, "protocol must be ike, esp or ah")
    values, pfs, esns = [], set(), []
    for text in proposals:
        value, ke, esn = _one(text, protocol)
        values.append(value)
        pfs.add(ke)
        esns.append(frozenset(esn) or frozenset({"no"}))
    if protocol != "ike" and len(pfs) > 1:
        raise UnsupportedProposal(IMPL, ",".join(proposals), "pfs", "Libreswan's pfs= is per connection: "
                                  "every Child SA proposal must name a KE method, or none")
    if len(set(esns)) > 1:
        raise UnsupportedProposal(IMPL, ",".join(proposals), "esn", "Libreswan's esn= is per connection: "
                                  "every Child SA proposal must name the same ESN choice")
    esn = esns[0] if esns else frozenset({"no"})
    return LibreswanAlgorithms(",".join(values), pfs == {True}, "either" if len(esn) == 2 else next(iter(esn)))
