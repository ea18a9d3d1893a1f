"""Cases that must come out FAILED or UNIMPLEMENTED: run by suites/lab/test_verdicts_live.py in a child pytest,
never collected on their own (the file name does not match test_*.py)."""
from __future__ import annotations

import dataclasses

import pytest

from harness.esp import Faults
from harness.peers.connection import Auth, mirrored

pytestmark = [pytest.mark.lab, pytest.mark.root]


@pytest.mark.ends("builtin>peer", "peer>builtin")
@pytest.mark.rfc(7296, "2.15", "MUST")
def test_wrong_psk(pair):
    conn = pair.connection()
    responder = dataclasses.replace(mirrored(conn), auth=Auth(psk="a deliberately different PSK 0123456789"))
    pair.establish(conn, responder)


@pytest.mark.ends("builtin>peer")
@pytest.mark.rfc(4302, "2.7", "MUST")
def test_ah_gmac(pair):
    pair.establish(pair.connection(protocol="ah", child_proposals=["aes128gmac"]))


@pytest.mark.ends("builtin>peer")
@pytest.mark.rfc(4303, "3.4.4", "MUST")
def test_corrupted_packet_on_the_wire(pair):
    pair.establish(pair.connection())
    peer = pair.address(pair.responder)
    pair.builtin.send_echo(peer, 7, 1)
    pair.builtin.send_echo(peer, 7, 2, Faults(corrupt_icv=True))  # the peer drops it; the wire check must flag it
