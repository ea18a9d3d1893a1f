"""The proposal table: a pairwise cover of IKE and Child SA transforms, made from a space file and the peers' lists.

    python -m harness.cases.proposal_cover suites/ike/proposal_space.json suites/ike/proposals.json

The space file names the transforms to try per type (strongSwan proposal keywords; "none" for no INTEG) for the
IKE SA (encr, prf, integ, ke) and the Child SA (encr, integ, esn), and the algorithm lists recorded from each
peer version (`swanctl --list-algs`, `ipsec whack --status`). A profile per list says which rows that peer can
run against the built-in stack: every transform listed by the peer and by harness.crypto, and expressible in
the peer's configuration (Libreswan's ike= ties IKE integrity to the PRF). The IKE rows cover every pair of
IKE transform values each profile can run; the Child SA rows likewise; each IKE row gets a Child SA row valid
for at least the same profiles. Rows are written as a case table (harness.cases.table) with stable ids.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.cases import pairwise
from harness.datafile import load_json
from harness.errors import ConfigError, UnsupportedProposal
from harness.peers.algorithms import Algorithms, builtin_algorithms, parse_swanctl_list_algs, parse_whack_status

ROOT = Path(__file__).resolve().parents[2]
PARSERS = {"strongswan": parse_swanctl_list_algs, "libreswan": parse_whack_status}


def proposal(row: Sequence[str]) -> str:
    """A row's strongSwan proposal: its keywords joined by '-', 'none' left out."""
    return "-".join(v for v in row if v != "none")


def _expressible(family: str, text: str, protocol: str) -> bool:
    if family != "libreswan":
        return True
    from harness.peers.libreswan_proposals import translate
    try:
        translate([text], protocol)
    except UnsupportedProposal:
        return False
    return True


def profile(family: str, algs: Algorithms, protocol: str) -> Callable[[pairwise.Row], bool]:
    """The rows (of the IKE or the Child SA space) a peer with these algorithms can run against the built-in stack."""
    from harness.ike.proposals import parse_proposal

    builtin = builtin_algorithms()
    child = protocol != "ike"

    def valid(row: pairwise.Row) -> bool:
        text = proposal(row)
        try:
            p = parse_proposal(text, protocol)
        except ConfigError:
            return False
        return not algs.missing(p, child) and not builtin.missing(p, child) and _expressible(family, text, protocol)
    return valid


def lists(space: Mapping[str, Any], where: Path) -> dict[str, tuple[str, Algorithms]]:
    """The recorded algorithm lists of the space file: name -> (family, Algorithms)."""
    out = {}
    for name, rel in space.get("algorithm_lists", {}).items():
        family = name.split("-")[0]
        if family not in PARSERS:
            raise ConfigError(f"{where}: algorithm_lists: {name!r} is neither strongswan-* nor libreswan-*")
        path = ROOT / rel
        try:
            out[name] = (family, PARSERS[family](path.read_text()))
        except OSError as e:
            raise ConfigError(f"{where}: algorithm_lists: {name}: cannot read {rel}: {e.strerror}") from None
    return out


def _rows(space: Mapping[str, Sequence[str]], profiles: list[Callable[[pairwise.Row], bool]]) -> list[pairwise.Row]:
    every = pairwise.rows_of(space)
    order = sorted(profiles, key=lambda v: sum(map(v, every)))  # the most restrictive first
    return pairwise.cover(space, order)


def table(space_path: Path) -> dict[str, Any]:
    """The case table for a space file (see module doc)."""
    space = load_json(space_path)
    for key in ("ike", "esp", "rfc", "algorithm_lists"):
        if key not in space:
            raise ConfigError(f"{space_path}: missing {key!r}")
    peers = lists(space, space_path)
    ike_p = {n: profile(f, a, "ike") for n, (f, a) in peers.items()}
    esp_p = {n: profile(f, a, "esp") for n, (f, a) in peers.items()}
    ike_rows = _rows(space["ike"], list(ike_p.values()))
    esp_rows = _rows(space["esp"], list(esp_p.values()))

    def who(row: pairwise.Row, profiles: Mapping[str, Callable[[pairwise.Row], bool]]) -> frozenset[str]:
        return frozenset(n for n, v in profiles.items() if v(row))

    esp_who = [who(r, esp_p) for r in esp_rows]
    used = [0] * len(esp_rows)
    cases = []
    for r in ike_rows:
        need = who(r, ike_p)
        fits = [i for i, w in enumerate(esp_who) if need <= w] or list(range(len(esp_rows)))
        i = min(fits, key=lambda k: (used[k], k))  # the least used Child SA row that every peer of this row runs
        used[i] += 1
        ike, esp = proposal(r), proposal(esp_rows[i])
        cases.append({"id": f"{ike}.{esp}", "rfc": space["rfc"],
                      "connection": {"ike_proposals": [ike], "child_proposals": [esp], "mode": "transport"},
                      "ends": ["builtin>peer", "peer>builtin"],
                      "note": "runs on " + ", ".join(sorted(need & esp_who[i])) if need & esp_who[i] else "no peer"})
    unused = [proposal(esp_rows[i]) for i, n in enumerate(used) if not n]
    if unused:
        raise ConfigError(f"{space_path}: Child SA rows without an IKE row to ride on: {unused}")
    return {"_source": f"generated by `python -m harness.cases.proposal_cover {space_path.relative_to(ROOT)} ...` from "
                       f"the space file and the algorithm lists it names; do not edit by hand",
            "cases": cases}


def main(argv: list[str]) -> int:
    """Write the table of argv[0]'s space to argv[1]."""
    if len(argv) != 2:
        print("usage: python -m harness.cases.proposal_cover SPACE.json OUT.json", file=sys.stderr)
        return 2
    try:
        out = table(Path(argv[0]).resolve())
    except ConfigError as e:
        print(f"proposal_cover: {e}", file=sys.stderr)
        return 1
    text = "{\n" + f' "_source": {json.dumps(out["_source"])},\n "cases": [\n' + ",\n".join(
        "  " + json.dumps(c) for c in out["cases"]) + "\n ]\n}\n"
    Path(argv[1]).write_text(text)
    print(f"{argv[1]}: {len(out['cases'])} rows", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
