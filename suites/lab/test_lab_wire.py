"""Every peer sits on the lab wire: reachable both ways from the tester, controllable, named in the report."""
from __future__ import annotations

import struct

import pytest

from harness.lab import read_pcap

pytestmark = [pytest.mark.lab, pytest.mark.root]


def _icmp_sources(pcap, dst: str) -> set[str]:
    out = set()
    for _, frame in read_pcap(pcap):
        if len(frame) >= 34 and struct.unpack_from("!H", frame, 12)[0] == 0x0800 and frame[23] == 1:
            src, to = ".".join(map(str, frame[26:30])), ".".join(map(str, frame[30:34]))
            if to == dst:
                out.add(src)
    return out


def test_tester_and_peer_reach_each_other(lab):
    peer = lab.lab.node("peer")
    assert lab.lab.ping("tester", peer.address(), count=2)
    assert lab.lab.ping("tester", peer.address(version=6))
    rc, out, err = lab.node("peer").exec(["ping", "-n", "-c", "1", "-W", "2", lab.tester.address()])
    assert rc == 0, out + err


def test_peer_daemon_answers_over_the_management_segment(lab):
    assert lab.peer.version()
    assert isinstance(lab.peer.list_sas(), list)


@pytest.mark.topology("nat")
def test_peer_sees_the_tester_only_as_the_nat_router(lab):
    peer = lab.lab.node("peer")
    assert lab.lab.ping("tester", peer.address(), count=2)
    lab.capture.stop()
    assert _icmp_sources(lab.capture.files["outside"], peer.address()) == {lab.lab.node("nat").address("outside")}
    assert _icmp_sources(lab.capture.files["inside"], peer.address()) == {lab.tester.address()}
