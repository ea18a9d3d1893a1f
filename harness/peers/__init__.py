"""Reference peers behind one protocol: a neutral Connection, PeerAdapter, strongSwan (vici) and Libreswan (whack).

`adapter_for(peer, node, lab=..., node_name)` wraps a started runtime node (harness.runtime) in its
implementation's adapter; the lab (harness.lab) gives strongSwan's vici its TCP path on the management segment.
"""
from __future__ import annotations

import socket
from typing import Any

from harness.errors import LabError
from harness.peers.base import ChildSaRecord, IkeSaRecord, PeerAdapter, sa_keys
from harness.peers.connection import Auth, Connection, Dpd, Identity, Lifetimes, connection_from_dict, load_connection, mirrored
from harness.peers.xfrm import XfrmPolicy, XfrmState, parse_xfrm_policy, parse_xfrm_state, parse_xfrm_stat

__all__ = ["Auth", "ChildSaRecord", "Connection", "Dpd", "Identity", "IkeSaRecord", "Lifetimes", "PeerAdapter", "XfrmPolicy",
           "XfrmState", "adapter_for", "connection_from_dict", "load_connection", "mirrored", "parse_xfrm_policy",
           "parse_xfrm_stat", "parse_xfrm_state", "sa_keys"]

MANAGEMENT_SEGMENT = "mgmt"


def adapter_for(peer: str, runtime_node: Any, lab: Any = None, node: str | None = None) -> PeerAdapter:
    """The adapter for a started node of `peer` (e.g. "strongswan-5.9", "libreswan-4.10"); the daemon starts on first load()."""
    family = peer.split("-")[0]
    if family == "strongswan":
        from harness.peers.strongswan import VICI_PORT, StrongswanAdapter

        if lab is None or node is None:
            raise LabError(f"{peer}: vici needs the lab and the node's name (TCP on the management segment)")
        addr = lab.node(node).address(MANAGEMENT_SEGMENT)

        def connect() -> socket.socket:
            return lab.in_lab(socket.create_connection, (addr, VICI_PORT), 5.0)

        return StrongswanAdapter(runtime_node, f"tcp://{addr}:{VICI_PORT}", connect)
    if family == "libreswan":
        from harness.peers.libreswan import LibreswanAdapter

        return LibreswanAdapter(runtime_node)
    raise LabError(f"no peer adapter for {peer!r} (known: strongswan-*, libreswan-*)")
