"""Helpers for the lab tests: a namespace that stands in for a runtime-started peer, and frame parsing."""
from __future__ import annotations

import struct
from ipaddress import IPv4Address

import pytest
from pyroute2 import IPRoute

from harness.lab import Lab, labels, netns


class NamespacePeer:
    """Stands in for a runtime node: a namespace whose links are made exactly as lab.link_specs() asks."""

    def __init__(self, lab: Lab, peer: str) -> None:
        self.lab, self.peer = lab, peer
        self.netns = labels.resource_name(lab.run, lab.worker, lab.topology.name, f"{peer}stub")
        netns.create(self.netns)
        specs = lab.link_specs(peer)

        def make_links() -> None:
            with IPRoute() as ipr:
                for s in specs:
                    ipr.link("add", ifname=s.host_ifname, kind="veth",
                             peer={"ifname": s.guest_ifname, "net_ns_fd": self.netns, "address": s.mac})

        lab.in_lab(make_links)
        lab.attach(peer)
        lab.configure_guest(peer, self.exec)

    def exec(self, argv: list[str]) -> tuple[int, str, str]:
        """Run argv in the stand-in's namespace: (rc, stdout, stderr), like a runtime node's exec."""
        r = netns.run_cmd(self.netns, argv)
        return r.returncode, r.stdout, r.stderr

    def logs(self) -> str:
        """What a daemon's log would hold: the stand-in runs none."""
        return f"stand-in namespace {self.netns}: no IKE daemon runs here\n"

    def close(self) -> None:
        """Delete the stand-in's namespace."""
        netns.delete(self.netns)


@pytest.fixture
def namespace_peer():
    """Factory: namespace_peer(lab, "peer") -> NamespacePeer, deleted after the test."""
    made: list[NamespacePeer] = []

    def make(lab: Lab, peer: str) -> NamespacePeer:
        p = NamespacePeer(lab, peer)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


def ipv4_of(frame: bytes) -> tuple[str, str, int, bytes] | None:
    """(src, dst, protocol, payload) of an Ethernet II frame carrying IPv4, else None."""
    if len(frame) < 34 or struct.unpack_from("!H", frame, 12)[0] != 0x0800:
        return None
    ihl = (frame[14] & 0x0F) * 4
    return (str(IPv4Address(frame[26:30])), str(IPv4Address(frame[30:34])), frame[23], frame[14 + ihl:])
