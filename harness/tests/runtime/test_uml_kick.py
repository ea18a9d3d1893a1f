"""The UML kick: its frame, and that a registered TAP gets one each INTERVAL until it is removed."""
from __future__ import annotations

import select
import socket
import subprocess
import time

import pytest

from harness.lab import labels, netns
from harness.runtime import uml_kick
from harness.runtime.uml_kick import ETHERTYPE, INTERVAL, Kicker, frame

MAC = "02:49:07:00:01:00"


def test_the_frame_goes_to_the_guest_mac_with_the_experimental_ethertype():
    f = frame(MAC)
    assert (f[:6].hex(":"), f[6:12], int.from_bytes(f[12:14], "big"), len(f)) == (MAC, uml_kick.SOURCE, ETHERTYPE, 60)
    assert f[6] & 0x02 and not f[6] & 0x01  # locally administered unicast source


def _kicks(s: socket.socket, seconds: float) -> int:
    """Kick frames read from s within seconds."""
    n, end = 0, time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0 and select.select([s], [], [], left)[0]:
        data = s.recv(2048)
        n += int.from_bytes(data[12:14], "big") == ETHERTYPE
    return n


@pytest.mark.root
def test_a_registered_link_is_kicked_until_it_is_removed():
    name = labels.resource_name(labels.new_run_id(), "kick")
    netns.create(name)
    try:
        for argv in (["link", "add", "tap0", "type", "veth", "peer", "name", "guest0"],
                     ["link", "set", "guest0", "address", MAC], ["link", "set", "tap0", "up"],
                     ["link", "set", "guest0", "up"]):
            subprocess.run(["ip", "-n", name, *argv], check=True, capture_output=True)
        rx = netns.run_in(name, lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETHERTYPE)))
        rx.bind(("guest0", 0))
        kicker = Kicker()
        kicker.add(name, "tap0", MAC)
        try:
            assert _kicks(rx, 10 * INTERVAL) >= 2
        finally:
            kicker.remove(name, "tap0")
        _kicks(rx, 2 * INTERVAL)  # one may have been on its way
        assert _kicks(rx, 4 * INTERVAL) == 0
        rx.close()
    finally:
        netns.delete(name)
