"""Which two ends a case runs between, and on which lab topology.

An end is the built-in stack ("builtin", at the tester) or a reference peer by name (strongswan-5.9, ...).
A PairSpec names the initiator, the responder and the case's topology; peer-to-peer pairs run on the
topology's peer-pair counterpart (`peer_pair` in harness/lab/topologies.json, e.g. direct -> p2p), with
strongSwan on the left node and Libreswan on the right, either of them initiating.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

from harness.errors import ConfigError
from harness.lab.topology import topology as load_topology

BUILTIN = "builtin"
KINDS = ("builtin>peer", "peer>builtin", "peer>peer")
DEFAULT_KINDS = KINDS


@dataclass(frozen=True)
class PairSpec:
    """One pair of ends: initiator and responder names, the kind (builtin>peer, ...) and the case's topology."""

    initiator: str
    responder: str
    kind: str
    topology: str = "direct"

    @property
    def id(self) -> str:
        """The pytest id: initiator>responder."""
        return f"{self.initiator}>{self.responder}"

    @property
    def peers(self) -> tuple[str, ...]:
        """The reference peers of the pair (no "builtin")."""
        return tuple(p for p in (self.initiator, self.responder) if p != BUILTIN)

    @property
    def column(self) -> str:
        """The pair's column in the interop matrix: the peer, or both peers joined by '+' in left, right order."""
        return "+".join(sorted(self.peers, key=lambda p: not p.startswith("strongswan")))

    @property
    def role(self) -> str:
        """The pair's row suffix in the matrix: who initiates, without versions (builtin>peer, strongswan>libreswan)."""
        def family(e: str) -> str:
            return e if e == BUILTIN else ("peer" if self.kind != "peer>peer" else e.split("-")[0])

        return f"{family(self.initiator)}>{family(self.responder)}"

    @property
    def lab_topology(self) -> str:
        """The lab topology this pair runs on."""
        if self.kind != "peer>peer":
            return self.topology
        counterpart = load_topology(self.topology).peer_pair
        if not counterpart:
            raise ConfigError(f"topology {self.topology!r} has no peer_pair counterpart for peer-to-peer cases")
        return counterpart

    def nodes(self) -> dict[str, str]:
        """{end name: lab node} for this pair: builtin at the tester; peers on their topology's peer nodes."""
        topo = load_topology(self.lab_topology)
        peer_nodes = [n.name for n in topo.of_kind("peer")]
        if self.kind != "peer>peer":
            return {BUILTIN: "tester", self.peers[0]: peer_nodes[0]}
        left, right = peer_nodes[:2]
        ss = next(p for p in self.peers if p.startswith("strongswan"))
        other = next(p for p in self.peers if p != ss)
        return {ss: left, other: right}


def pair_specs(peers: list[str], kinds: tuple[str, ...], topology: str) -> list[PairSpec]:
    """Every pair of ends for these peers and kinds (peer>peer: each strongSwan with each Libreswan, both ways)."""
    for k in kinds:
        if k not in KINDS:
            raise ConfigError(f"ends: {k!r} is not one of {', '.join(KINDS)}")
    out = []
    for p in peers:
        if "builtin>peer" in kinds:
            out.append(PairSpec(BUILTIN, p, "builtin>peer", topology))
        if "peer>builtin" in kinds:
            out.append(PairSpec(p, BUILTIN, "peer>builtin", topology))
    if "peer>peer" in kinds:
        ss = [p for p in peers if p.startswith("strongswan-")]
        lsw = [p for p in peers if p.startswith("libreswan-")]
        for a, b in itertools.product(ss, lsw):
            out += [PairSpec(a, b, "peer>peer", topology), PairSpec(b, a, "peer>peer", topology)]
    return out
