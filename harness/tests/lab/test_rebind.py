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


def _sources(path, dst: str) -> list[tuple[str, int]]:
    """The UDP sources (address, port) of the packets to dst:4500 in a capture, in order."""
    out = []
    for _, frame in read_pcap(path):
        p = ipv4_of(frame)
        if p and p[1] == dst and p[2] == 17 and struct.unpack_from("!H", p[3], 2)[0] == 4500:
            out.append((p[0], struct.unpack_from("!H", p[3], 0)[0]))
    return out


@pytest.mark.parametrize("new_address", [False, True])
def test_rebound_maps_udp_to_new_ports_and_restores(tmp_path, namespace_peer, new_address):
    with Lab("nat", run=labels.new_run_id(), worker=0) as lab:
        namespace_peer(lab, "peer")
        peer = lab.node("peer").address()
        sock = lab.tester.udp[(4, 4500)]
        with lab.capture(tmp_path) as cap:
            def sent_from() -> tuple[str, int]:
                before = len(_sources(cap.flush()["outside"], peer))
                sock.sendto(b"x", (peer, 4500))
                for _ in range(100):  # the router forwards within milliseconds; read until it has
                    got = _sources(cap.flush()["outside"], peer)
                    if len(got) > before:
                        return got[-1]
                    time.sleep(0.02)
                raise AssertionError("the datagram never crossed the NAT router")

            nat = lab.node("nat").address("outside")
            assert sent_from() == (nat, 4500)  # masquerade keeps a free source port
            with rebound(lab, "nat", new_address=new_address) as address:
                src, port = sent_from()
                assert (src == address) and (address != nat) == new_address and NEW_PORTS[0] <= port <= NEW_PORTS[1]
            assert sent_from() == (nat, 4500)
            assert "ipsi-rebind" not in lab.exec("nat", ["nft", "list", "ruleset"]).stdout
