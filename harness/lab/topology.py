"""Topologies as data (topologies.json): segments, nodes of four kinds, links and routes, validated on load."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from harness.errors import ConfigError

TOPOLOGIES_FILE = Path(__file__).with_name("topologies.json")
NODE_KINDS = ("tester", "peer", "host", "nat")
MAX_NAME = 8  # node and segment names: `<node>.<n>` and `br-<segment>` fit in 15 characters
MANAGEMENT = "mgmt"


@dataclass(frozen=True)
class LinkDef:
    """A node's link: the segment it joins and its host number there."""

    segment: str
    host: int


@dataclass(frozen=True)
class RouteDef:
    """A static route: destination segment name or "default", via a node sharing a segment."""

    to: str
    via: str


@dataclass(frozen=True)
class NodeDef:
    """One node of a topology."""

    name: str
    kind: str
    links: tuple[LinkDef, ...]
    routes: tuple[RouteDef, ...] = ()
    forward: bool = False
    masquerade: str | None = None
    forward_to: str | None = None  # nat: UDP 500 and 4500 arriving on the masquerade segment go to this node


@dataclass(frozen=True)
class Topology:
    """A named topology: ordered data segments and nodes."""

    name: str
    description: str
    segments: tuple[str, ...]
    nodes: dict[str, NodeDef] = field(hash=False)
    peer_pair: str = ""  # the topology peer-to-peer cases use in this one's place (e.g. direct -> p2p)

    def of_kind(self, kind: str) -> list[NodeDef]:
        """The nodes of one kind, in file order."""
        return [n for n in self.nodes.values() if n.kind == kind]


def _name(where: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME or not value.replace("-", "").isalnum():
        raise ConfigError(f"{where}: key {key!r}: {value!r} is not a name of 1..{MAX_NAME} letters/digits")
    return value


def parse_topology(name: str, data: Any, source: str = str(TOPOLOGIES_FILE)) -> Topology:
    """Validate one topology entry; ConfigError naming the file, topology and key when it is wrong."""
    where = f"{source}: topology {name!r}"
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected an object")
    segments = data.get("segments")
    if not isinstance(segments, list) or not segments:
        raise ConfigError(f"{where}: key 'segments': expected a non-empty list")
    segs = tuple(_name(where, "segments", s) for s in segments)
    if MANAGEMENT in segs or len(set(segs)) != len(segs):
        raise ConfigError(f"{where}: key 'segments': duplicate or reserved name ({MANAGEMENT!r} is the management segment)")
    raw_nodes = data.get("nodes")
    if not isinstance(raw_nodes, dict) or not raw_nodes:
        raise ConfigError(f"{where}: key 'nodes': expected a non-empty object")
    nodes: dict[str, NodeDef] = {}
    for node_name, nd in raw_nodes.items():
        nw = f"{where}: node {_name(where, 'nodes', node_name)!r}"
        if not isinstance(nd, dict):
            raise ConfigError(f"{nw}: expected an object")
        kind = nd.get("kind")
        if kind not in NODE_KINDS:
            raise ConfigError(f"{nw}: key 'kind': {kind!r} is not one of {', '.join(NODE_KINDS)}")
        links = []
        for i, ld in enumerate(nd.get("links") or []):
            if not isinstance(ld, dict) or ld.get("segment") not in segs:
                raise ConfigError(f"{nw}: links[{i}]: 'segment' must name one of {', '.join(segs)}")
            host = ld.get("host")
            if not isinstance(host, int) or isinstance(host, bool) or not 1 <= host <= 254:
                raise ConfigError(f"{nw}: links[{i}]: 'host' must be a number 1..254")
            links.append(LinkDef(ld["segment"], host))
        if not links:
            raise ConfigError(f"{nw}: key 'links': a node needs at least one link")
        routes = []
        for i, rd in enumerate(nd.get("routes") or []):
            if not isinstance(rd, dict) or not (rd.get("to") == "default" or rd.get("to") in segs):
                raise ConfigError(f"{nw}: routes[{i}]: 'to' must be 'default' or a segment name")
            routes.append(RouteDef(rd["to"], str(rd.get("via"))))
        masq = nd.get("masquerade")
        if masq is not None and (kind != "nat" or masq not in {l.segment for l in links}):
            raise ConfigError(f"{nw}: key 'masquerade': only a nat node, naming one of its own segments")
        if kind == "nat" and masq is None:
            raise ConfigError(f"{nw}: key 'masquerade': a nat node names the segment it masquerades onto")
        fwd = nd.get("forward_to")
        if fwd is not None and (kind != "nat" or not isinstance(fwd, str)):
            raise ConfigError(f"{nw}: key 'forward_to': only a nat node, naming the node it forwards IKE to")
        nodes[node_name] = NodeDef(node_name, kind, tuple(links), tuple(routes), bool(nd.get("forward", False)), masq, fwd)
    for nd in nodes.values():
        for r in nd.routes:
            via = nodes.get(r.via)
            if via is None or not {l.segment for l in via.links} & {l.segment for l in nd.links}:
                raise ConfigError(f"{where}: node {nd.name!r}: route via {r.via!r}: not a node sharing a segment")
    if len(data.get("description", "")) == 0:
        raise ConfigError(f"{where}: key 'description': missing")
    if len([n for n in nodes.values() if n.kind == "tester"]) != 1:
        raise ConfigError(f"{where}: exactly one node of kind 'tester' is needed")
    pair = data.get("peer_pair", "")
    if not isinstance(pair, str):
        raise ConfigError(f"{where}: key 'peer_pair': must be a topology name")
    return Topology(name, data["description"], segs, nodes, pair)


@cache
def _load(path: Path) -> dict[str, Topology]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: cannot read topologies: {e}") from None
    return {k: parse_topology(k, v, str(path)) for k, v in data.items() if not k.startswith("_")}


def topologies(path: Path = TOPOLOGIES_FILE) -> dict[str, Topology]:
    """Every topology in the file, by name."""
    return _load(path)


def topology(name: str, path: Path = TOPOLOGIES_FILE) -> Topology:
    """One topology by name; ConfigError listing the known names if it is not there."""
    known = topologies(path)
    if name not in known:
        raise ConfigError(f"{path}: topology {name!r}: unknown (known: {', '.join(known)})")
    return known[name]
