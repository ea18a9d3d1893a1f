"""The wire to an external device: how a box the harness did not start gets onto a lab segment, and off it again.

Two ways, as the profile's [wire] says (harness.runtime.profile.Wire):
- netns: the device lives in a network namespace of this host (a simulated device). The lab makes a veth in its
  own namespace whose far end is created directly in the device's namespace (so no link ever sits in the root
  namespace), joins the near end to the peer's segment bridge, and either enslaves the far end to the bridge the
  profile names there or gives it the device's addresses with on-link routes to the tester. The near end lives
  in the lab namespace: deleting the lab namespace (exit, Ctrl-C, `ipsec-interop clean` by label) removes both ends.
- interface: a host interface the user names, and only on that explicit setting: a macvlan on it moved into the
  tester's namespace, or the interface itself moved there; what it was (addresses, MTU, up/down) is recorded
  before and given back exactly after. Only the named interface is touched.
Either way the tester reaches the device's own addresses on-link (a host route on the interface that leads to
it), so the device keeps the addresses its owner gave it. Plans are argv lists (pure, unit-tested); `run` runs them.
"""
from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import ip_address, ip_network

from harness.errors import LabError
from harness.runtime.profile import Profile

Argv = list[str]
MACVLAN_PREFIX = "ipsi-mv"


@dataclass(frozen=True)
class Ends:
    """Where the wire attaches on the lab side: lab namespace, the peer link's name there and its bridge; the tester's
    namespace, its interface on that segment and its addresses."""

    lab_netns: str
    lab_ifname: str
    bridge: str
    tester_netns: str
    tester_ifname: str
    tester_v4: str
    tester_v6: str
    segment_v4: str
    segment_v6: str
    worker: int = 0


@dataclass
class InterfaceState:
    """What a host interface was before the lab took it: name, MTU, up or down, its addresses (with prefix)."""

    name: str
    mtu: int
    up: bool
    addresses: list[str] = field(default_factory=list)


def _addresses(profile: Profile) -> list[tuple[int, str]]:
    return [(v, a) for v, a in ((4, profile.ipv4), (6, profile.ipv6)) if a]


def _tester_routes(profile: Profile, ends: Ends, dev: str, add: bool = True) -> list[Argv]:
    """Host routes in the tester's namespace to the device's addresses that lie outside the tester's segment."""
    out = []
    for v, a in _addresses(profile):
        seg = ends.segment_v4 if v == 4 else ends.segment_v6
        if dev == ends.tester_ifname and ip_address(a) in ip_network(seg):
            continue  # on the tester's own segment already
        src = ends.tester_v4 if v == 4 else ends.tester_v6
        argv = ["ip", "-n", ends.tester_netns, f"-{v}", "route", "add" if add else "del", f"{a}/{32 if v == 4 else 128}",
                "dev", dev]
        out.append(argv + ["src", src] if add else argv)
    return out


def netns_plan(profile: Profile, ends: Ends) -> list[Argv]:
    """The commands that link the device's namespace to the lab (the veth made in the lab namespace)."""
    w = profile.wire
    if w is None or w.kind != "netns" or not w.netns:
        raise LabError(f"{profile.path}: wire.kind: not \"netns\"")
    dev = w.netns
    cmds: list[Argv] = [
        ["ip", "-n", ends.lab_netns, "link", "add", ends.lab_ifname, "type", "veth", "peer", "name", w.ifname, "netns", dev],
        ["ip", "-n", ends.lab_netns, "link", "set", ends.lab_ifname, "master", ends.bridge, "up"],
    ]
    if w.bridge:
        cmds.append(["ip", "-n", dev, "link", "set", w.ifname, "master", w.bridge, "up"])
    else:
        cmds.append(["ip", "-n", dev, "link", "set", w.ifname, "up"])
        for v, a in _addresses(profile):
            cmds.append(["ip", "-n", dev, "addr", "add", f"{a}/{32 if v == 4 else 128}", "dev", w.ifname]
                        + (["nodad"] if v == 6 else []))
            seg = ends.segment_v4 if v == 4 else ends.segment_v6
            cmds.append(["ip", "-n", dev, f"-{v}", "route", "add", seg, "dev", w.ifname])
    return cmds + _tester_routes(profile, ends, ends.tester_ifname)


def netns_undo(profile: Profile, ends: Ends) -> list[Argv]:
    """The commands that remove the device's wire: the tester's routes, then the veth (both ends go with it)."""
    return [*_tester_routes(profile, ends, ends.tester_ifname, add=False), ["ip", "-n", ends.lab_netns, "link", "del", ends.lab_ifname]]


def macvlan_name(worker: int) -> str:
    """The name of the lab's macvlan on a user's interface (per worker)."""
    return f"{MACVLAN_PREFIX}{worker}"


def interface_plan(profile: Profile, ends: Ends, before: InterfaceState | None = None) -> list[Argv]:
    """The commands that put the named host interface (or a macvlan on it) into the tester's namespace."""
    w = profile.wire
    if w is None or w.kind != "interface" or not w.interface:
        raise LabError(f"{profile.path}: wire.kind: not \"interface\"")
    t = ends.tester_netns
    if w.attach == "macvlan":
        mv = macvlan_name(ends.worker)
        return [["ip", "link", "add", "link", w.interface, "name", mv, "netns", t, "type", "macvlan", "mode", "bridge"],
                ["ip", "-n", t, "link", "set", mv, "up"], *_tester_routes(profile, ends, mv)]
    if before is None:
        raise LabError(f"{profile.path}: wire.attach = \"move\": the interface's state must be recorded first")
    return [["ip", "link", "set", w.interface, "netns", t], ["ip", "-n", t, "link", "set", w.interface, "up"],
            *_tester_routes(profile, ends, w.interface)]


def interface_undo(profile: Profile, ends: Ends, before: InterfaceState | None = None) -> list[Argv]:
    """The commands that give the host interface back exactly as it was (or remove the macvlan)."""
    w = profile.wire
    assert w is not None and w.interface
    t = ends.tester_netns
    if w.attach == "macvlan":
        return [["ip", "-n", t, "link", "del", macvlan_name(ends.worker)]]
    if before is None:
        raise LabError(f"{profile.path}: wire.attach = \"move\": nothing recorded to give {w.interface} back")
    cmds = [["ip", "-n", t, "addr", "flush", "dev", w.interface], ["ip", "-n", t, "link", "set", w.interface, "down"],
            ["ip", "-n", t, "link", "set", w.interface, "netns", "1"],
            ["ip", "link", "set", w.interface, "mtu", str(before.mtu)]]
    cmds += [["ip", "addr", "add", a, "dev", w.interface] for a in before.addresses]
    cmds.append(["ip", "link", "set", w.interface, "up" if before.up else "down"])
    return cmds


def parse_state(name: str, link_json: str, addr_json: str) -> InterfaceState:
    """An InterfaceState from `ip -j link show dev NAME` and `ip -j addr show dev NAME` (LabError if unreadable)."""
    try:
        link, addr = json.loads(link_json)[0], json.loads(addr_json)[0]
        addrs = [f"{a['local']}/{a['prefixlen']}" for a in addr.get("addr_info", [])
                 if not (a.get("family") == "inet6" and a.get("scope") == "link")]  # the kernel makes those anew
        return InterfaceState(name, int(link["mtu"]), "UP" in link.get("flags", []), addrs)
    except (ValueError, LookupError, TypeError) as e:
        raise LabError(f"cannot read the state of interface {name}: {e}") from None


def record(name: str) -> InterfaceState:
    """The host interface's state now (read-only: two `ip -j ... show`)."""
    outs = []
    for what in ("link", "addr"):
        r = subprocess.run(["ip", "-j", what, "show", "dev", name], capture_output=True, text=True, timeout=10)
        if r.returncode:
            raise LabError(f"wire.interface: {name}: {r.stderr.strip()}")
        outs.append(r.stdout)
    return parse_state(name, *outs)


def run(cmds: Sequence[Argv], what: str, check: bool = True) -> list[str]:
    """Run the commands in order; LabError naming the first failure (check) or the failures collected (not check)."""
    errors = []
    for argv in cmds:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        if r.returncode:
            msg = f"{what}: `{' '.join(argv)}` failed: {r.stderr.strip()}"
            if check:
                raise LabError(msg)
            errors.append(msg)
    return errors


class DeviceWire:
    """The wire of one external device on one lab: connect() and disconnect() (idempotent); a context manager."""

    def __init__(self, profile: Profile, ends: Ends) -> None:
        self.profile, self.ends = profile, ends
        self.before: InterfaceState | None = None
        self.connected = False

    def connect(self) -> DeviceWire:
        """Lay the wire as the profile says; on failure take back what was done and raise LabError."""
        w = self.profile.wire
        if w is None:
            return self
        if w.kind == "netns":
            plan = netns_plan(self.profile, self.ends)
        else:
            if w.attach == "move":
                self.before = record(str(w.interface))
            plan = interface_plan(self.profile, self.ends, self.before)
        self.connected = True
        try:
            run(plan, f"{self.profile.path}: wire")
        except BaseException:
            self.disconnect()
            raise
        return self

    def disconnect(self) -> list[str]:
        """Take the wire away (errors collected, not raised: this runs on the way out)."""
        w = self.profile.wire
        if w is None or not self.connected:
            return []
        self.connected = False
        undo = netns_undo(self.profile, self.ends) if w.kind == "netns" else interface_undo(self.profile, self.ends, self.before)
        return run(undo, f"{self.profile.path}: wire undo", check=False)

    def __enter__(self) -> DeviceWire:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.disconnect()
