"""Open one captured ESP/AH packet at a given full sequence number with the built-in data plane (harness.esp).

A capture is not a receiver: the SA's Receiver is reused for its cipher contexts, but its
anti-replay window is replaced before each packet by one that admits exactly the sequence
number asked for, so retransmitted and reordered packets open like any other (the caller
reports them). Drops surface as harness.errors.PacketDropped ("bad_icv", "bad_padding",
"malformed", ...).
"""
from __future__ import annotations

from harness.esp import Receiver, ReplayWindow, SecurityAssociation, Unprotected
from harness.keys import IpsecSaKeys
from harness.tools.ipsec_locate import Located

__all__ = ["Receivers", "Unprotected", "unprotect"]

Receivers = dict[tuple[IpsecSaKeys, bool], Receiver]


def unprotect(keys: IpsecSaKeys, loc: Located, full_seq: int, receivers: Receivers) -> Unprotected:
    """The inner packet of loc.ip under SA keys, its sequence number taken as full_seq (receivers: the caller's cache)."""
    rx = receivers.get((keys, loc.udp_encap))
    if rx is None:
        sa = SecurityAssociation.from_keys(keys, udp_encap=(4500, 4500) if loc.udp_encap else None)
        rx = receivers[(keys, loc.udp_encap)] = Receiver(sa, window=1)
    rx.window = ReplayWindow(1, keys.esn, top=full_seq - 1)
    return rx.unprotect(loc.ip)
