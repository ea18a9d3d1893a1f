"""Reference peers behind one protocol: a neutral Connection, PeerAdapter, strongSwan (vici) and Libreswan (whack).

The lab wraps a started runtime node in its implementation's adapter (harness.lab.peering.make_adapter,
which also gives strongSwan's vici its TCP path on the management segment).
"""
from __future__ import annotations

from harness.peers.base import ChildSaRecord, IkeSaRecord, PeerAdapter, sa_keys
from harness.peers.connection import Auth, Connection, Dpd, Identity, Lifetimes, connection_from_dict, load_connection, mirrored
from harness.peers.xfrm import XfrmPolicy, XfrmState, parse_xfrm_policy, parse_xfrm_state, parse_xfrm_stat

__all__ = ["Auth", "ChildSaRecord", "Connection", "Dpd", "Identity", "IkeSaRecord", "Lifetimes", "PeerAdapter", "XfrmPolicy",
           "XfrmState", "connection_from_dict", "load_connection", "mirrored", "parse_xfrm_policy", "parse_xfrm_stat",
           "parse_xfrm_state", "sa_keys"]
