"""harness.lab.rebind: the NAT router maps UDP to new source ports inside the block and as before after it; the
capture is readable mid-case (Capture.flush)."""
from __future__ import annotations

import struct
import time

import pytest

from harness.lab import labels
from harness.lab.capture import read_pcap
from harness.lab.lab import Lab
from harness.lab.rebind import NEW_PORTS, rebound
from harness.tests.lab.conftest import ipv4_of

pytestmark = pytest.mark.root


def _source_ports(path, dst: str) -> list[int]:
    """The UDP source ports of the packets to dst:4500 in a capture, in order."""
    out = []
    for _, frame in read_pcap(path):
        p = ipv4_of(frame)
        if p and p[1] == dst and p[2] == 17 and struct.unpack_from("!H", p[3], 2)[0] == 4500:
            out.append(struct.unpack_from("!H", p[3], 0)[0])
    return out


def test_rebound_maps_udp_to_new_ports_and_restores(tmp_path, namespace_peer):
    with Lab("nat", run=labels.new_run_id(), worker=0) as lab:
        namespace_peer(lab, "peer")
        peer = lab.node("peer").address()
        sock = lab.tester.udp[(4, 4500)]
        with lab.capture(tmp_path) as cap:
            def sent_from() -> int:
                before = len(_source_ports(cap.flush()["outside"], peer))
                sock.sendto(b"x", (peer, 4500))
                for _ in range(100):  # the router forwards within milliseconds; read until it has
                    ports = _source_ports(cap.flush()["outside"], peer)
                    if len(ports) > before:
                        return ports[-1]
                    time.sleep(0.02)
                raise AssertionError("the datagram never crossed the NAT router")

            assert sent_from() == 4500  # masquerade keeps a free source port
            with rebound(lab, "nat"):
                assert NEW_PORTS[0] <= sent_from() <= NEW_PORTS[1]
            assert sent_from() == 4500
            assert "ipsi-rebind" not in lab.exec("nat", ["nft", "list", "ruleset"]).stdout
