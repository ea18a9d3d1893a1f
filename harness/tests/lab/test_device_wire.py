"""The wire to an external device: the commands each [wire] setting runs (pure plans; no root, nothing touched)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import LabError
from harness.lab.device_wire import DeviceWire, Ends, InterfaceState, interface_plan, interface_undo, netns_plan, \
    netns_undo, parse_state
from harness.runtime.profile import load_profile

BASE = """
version = "1"
[address]
ipv4 = "198.18.200.3"
ipv6 = "2001:db8:200::3"
[identity]
local = "gw"
remote = "tester"
[credentials]
psk = "p" 
[proposals]
ike = ["aes128gcm16-prfsha256-ecp256"]
esp = ["aes128gcm16"]
"""
ENDS = Ends("ipsi-r-0-direct-lab", "peer.0", "br-net", "ipsi-r-0-direct-tester", "net", "198.18.0.1",
            "2001:db8:0:0::1", "198.18.0.0/24", "2001:db8::/64", 0)


def _profile(tmp_path: Path, wire: str):  # noqa: ANN202
    p = tmp_path / "dev.toml"
    p.write_text(BASE + wire)
    return load_profile(p)


def test_netns_wire_makes_the_veth_in_the_lab_with_its_far_end_in_the_device_namespace(tmp_path: Path) -> None:
    prof = _profile(tmp_path, '[wire]\nkind = "netns"\nnetns = "vendor"\n')
    cmds = netns_plan(prof, ENDS)
    assert cmds[0] == ["ip", "-n", ENDS.lab_netns, "link", "add", "peer.0", "type", "veth", "peer", "name", "lab0",
                       "netns", "vendor"]
    assert ["ip", "-n", ENDS.lab_netns, "link", "set", "peer.0", "master", "br-net", "up"] in cmds
    assert ["ip", "-n", "vendor", "addr", "add", "198.18.200.3/32", "dev", "lab0"] in cmds
    assert ["ip", "-n", "vendor", "-4", "route", "add", "198.18.0.0/24", "dev", "lab0"] in cmds
    # the device keeps its own addresses: the tester reaches them on-link, from its own
    assert ["ip", "-n", ENDS.tester_netns, "-4", "route", "add", "198.18.200.3/32", "dev", "net", "src", "198.18.0.1"] in cmds
    assert all(c[:3] == ["ip", "-n", ENDS.lab_netns] or c[2] in ("vendor", ENDS.tester_netns) for c in cmds)  # never the root ns
    undo = netns_undo(prof, ENDS)
    assert undo[-1] == ["ip", "-n", ENDS.lab_netns, "link", "del", "peer.0"]
    assert ["ip", "-n", ENDS.tester_netns, "-4", "route", "del", "198.18.200.3/32", "dev", "net"] in undo


def test_netns_wire_with_a_bridge_enslaves_and_leaves_the_addresses_to_the_device(tmp_path: Path) -> None:
    prof = _profile(tmp_path, '[wire]\nkind = "netns"\nnetns = "vendor"\nifname = "up0"\nbridge = "br0"\n')
    cmds = netns_plan(prof, ENDS)
    assert ["ip", "-n", "vendor", "link", "set", "up0", "master", "br0", "up"] in cmds
    assert not any("addr" in c and "vendor" in c for c in cmds)


def test_macvlan_on_the_named_interface_goes_straight_into_the_tester_namespace(tmp_path: Path) -> None:
    prof = _profile(tmp_path, '[wire]\nkind = "interface"\ninterface = "enp3s0"\n')
    cmds = interface_plan(prof, ENDS)
    assert cmds[0] == ["ip", "link", "add", "link", "enp3s0", "name", "ipsi-mv0", "netns", ENDS.tester_netns, "type",
                       "macvlan", "mode", "bridge"]
    assert ["ip", "-n", ENDS.tester_netns, "-4", "route", "add", "198.18.200.3/32", "dev", "ipsi-mv0", "src",
            "198.18.0.1"] in cmds
    # only the named interface: no other link name appears in a root-namespace command
    assert all("-n" in c or "enp3s0" in c for c in cmds)
    assert interface_undo(prof, ENDS) == [["ip", "-n", ENDS.tester_netns, "link", "del", "ipsi-mv0"]]


def test_a_moved_interface_is_given_back_exactly_as_it_was(tmp_path: Path) -> None:
    prof = _profile(tmp_path, '[wire]\nkind = "interface"\ninterface = "enp3s0"\nattach = "move"\n')
    link = json.dumps([{"ifname": "enp3s0", "mtu": 9000, "flags": ["BROADCAST", "UP", "LOWER_UP"]}])
    addr = json.dumps([{"addr_info": [{"family": "inet", "local": "198.18.200.3", "prefixlen": 24, "scope": "global"},
                                      {"family": "inet6", "local": "fe80::1", "prefixlen": 64, "scope": "link"},
                                      {"family": "inet6", "local": "2001:db8:1::5", "prefixlen": 64, "scope": "global"}]}])
    before = parse_state("enp3s0", link, addr)
    assert before == InterfaceState("enp3s0", 9000, True, ["198.18.200.3/24", "2001:db8:1::5/64"])
    with pytest.raises(LabError, match="recorded first"):
        interface_plan(prof, ENDS)
    cmds = interface_plan(prof, ENDS, before)
    assert cmds[0] == ["ip", "link", "set", "enp3s0", "netns", ENDS.tester_netns]
    undo = interface_undo(prof, ENDS, before)
    assert ["ip", "-n", ENDS.tester_netns, "link", "set", "enp3s0", "netns", "1"] in undo
    assert undo[-4:] == [["ip", "link", "set", "enp3s0", "mtu", "9000"], ["ip", "addr", "add", "198.18.200.3/24", "dev", "enp3s0"],
                         ["ip", "addr", "add", "2001:db8:1::5/64", "dev", "enp3s0"], ["ip", "link", "set", "enp3s0", "up"]]


def test_unreadable_interface_state_is_a_lab_error() -> None:
    with pytest.raises(LabError, match="enp3s0"):
        parse_state("enp3s0", "[]", "[]")


def test_no_wire_lays_nothing(tmp_path: Path) -> None:
    w = DeviceWire(_profile(tmp_path, ""), ENDS)
    assert w.connect() is w and not w.connected and w.disconnect() == []


@pytest.mark.parametrize("wire, key", [
    ('[wire]\nnetns = "x"\n', "wire.kind: missing"),
    ('[wire]\nkind = "cable"\n', "wire.kind"),
    ('[wire]\nkind = "netns"\n', "wire.netns: missing"),
    ('[wire]\nkind = "netns"\nnetns = "../x"\n', "wire.netns"),
    ('[wire]\nkind = "netns"\nnetns = "x"\ninterface = "eth0"\n', "wire.interface: only for"),
    ('[wire]\nkind = "netns"\nnetns = "x"\nifname = "a-very-long-interface-name"\n', "wire.ifname"),
    ('[wire]\nkind = "interface"\n', "wire.interface: missing"),
    ('[wire]\nkind = "interface"\ninterface = "eth0"\nattach = "steal"\n', "wire.attach"),
    ('[wire]\nkind = "interface"\ninterface = "eth0"\nbridge = "br0"\n', "wire.bridge: only for"),
])
def test_wire_errors_name_the_key(tmp_path: Path, wire: str, key: str) -> None:
    from harness.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        _profile(tmp_path, wire)
    assert "dev.toml" in str(e.value) and key in str(e.value)
