"""A NAT router that changes its mapping mid-SA (RFC 7296 s2.23: "a NAT box decides to remove mappings that are still
alive ... or the NAT box is rebooted"): inside its own namespace only, its nftables masquerade maps UDP to new source
ports and its connection tracking is flushed, so the next packet of the end behind it leaves from a new port.

`rebound(lab, node, new_address=False)` is a context manager: inside it the router `node` maps UDP to NEW_PORTS, and
with new_address from a second address of its own on the masquerade segment (host NEW_HOST); on leaving, the rule and
the address are removed and the tracking flushed again, so the pooled lab is as it was for the next case.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from harness.errors import LabError
from harness.lab import netns

NEW_PORTS = (41000, 41999)
NEW_HOST = 200  # the host number of the router's second address on its masquerade segment (no node of a lab has it)
TABLE = "ip ipsi_nat"  # the NAT router's table (harness.lab.lab.Lab._nat_rules)


def _nft(ns: str, script: str) -> str:
    r = netns.run_cmd(ns, ["nft", *(["-a"] if script.startswith("list") else []), "-f", "-"], input=script.encode())
    if r.returncode != 0:
        raise LabError(f"nft in {ns}: {r.stderr.strip()} (script: {script.strip()})")
    return r.stdout


def flush_conntrack(ns: str) -> None:
    """Forget every connection the router tracks (its NAT mappings among them)."""
    def flush() -> None:
        from pyroute2 import Conntrack

        with Conntrack() as ct:
            ct.flush()

    try:
        netns.run_in(ns, flush)
    except OSError as e:
        raise LabError(f"conntrack flush in {ns}: {e}") from None


def _ip(ns: str, *argv: str) -> None:
    r = netns.run_cmd(ns, ["ip", *argv])
    if r.returncode != 0:
        raise LabError(f"ip {' '.join(argv)} in {ns}: {r.stderr.strip()}")


@contextmanager
def rebound(lab: Any, node: str, ports: tuple[int, int] = NEW_PORTS, new_address: bool = False) -> Iterator[str]:
    """Within the block, the NAT router `node` maps UDP leaving onto its masquerade segment to source ports in ports
    (and, with new_address, from its second address there), its old mappings forgotten; restored on leaving. Yields
    the address the mapping now uses."""
    n = lab.node(node)
    if n.kind != "nat" or not n.netns or not n.masquerade:
        raise LabError(f"rebind: node {node!r} is not a NAT router")
    i = n.interface(n.masquerade)
    comment = "ipsi-rebind"
    address = str(i.v4.network[NEW_HOST]) if new_address else str(i.v4.ip)
    if new_address:
        _ip(n.netns, "addr", "add", f"{address}/{i.v4.network.prefixlen}", "dev", i.ifname)
    to = f"snat ip to {address}:{ports[0]}-{ports[1]}" if new_address else f"masquerade to :{ports[0]}-{ports[1]}"
    try:
        _nft(n.netns, f'insert rule {TABLE} postrouting oifname "{i.ifname}" meta l4proto udp {to} comment "{comment}"\n')
        flush_conntrack(n.netns)
        yield address
    finally:
        listing = _nft(n.netns, f"list chain {TABLE} postrouting\n")
        for handle in re.findall(rf'comment "{comment}" # handle (\d+)', listing):
            _nft(n.netns, f"delete rule {TABLE} postrouting handle {handle}\n")
        if new_address:
            _ip(n.netns, "addr", "del", f"{address}/{i.v4.network.prefixlen}", "dev", i.ifname)
        flush_conntrack(n.netns)
