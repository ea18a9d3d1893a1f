"""A lab: one namespace of bridges (segments) per topology and worker, node namespaces on veths, NAT, tester.

Everything is created inside namespaces named `ipsi-<RUN>-<W>-<topology>-<role>`: the lab namespace
holds one bridge per segment plus the management bridge; tester, host and NAT nodes are namespaces
of their own whose veth is created in the lab namespace with its other end directly in the node's
namespace, so no link ever exists in the root namespace. Peer nodes (containers, UML guests) are
started by a runtime, which creates their links in the lab namespace; `attach()` enslaves them.
"""
from __future__ import annotations

import atexit
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Interface, IPv6Interface
from pathlib import Path
from typing import Callable, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from harness.errors import LabError
from harness.lab import addressing, labels, netns
from harness.lab.capture import Capture, Capturer
from harness.lab.ping import ping as ping_from
from harness.lab.tester import Tester, TesterAddress
from harness.lab.topology import MANAGEMENT, Topology, topology as load_topology
from harness.runtime.base import LinkSpec  # the runtimes' own link description (guest ifname, MAC, lab-side name)

T = TypeVar("T")
IFA_F_NODAD = 0x02
MANAGEMENT_HOST_BASE = 10  # peers' management addresses: .10, .11, ...; the lab namespace itself is .1


@dataclass(frozen=True)
class Segment:
    """A segment: a bridge in the lab namespace with its IPv4 and IPv6 subnets."""

    name: str
    bridge: str
    v4: addressing.IPv4Network
    v6: addressing.IPv6Network


@dataclass(frozen=True)
class Interface:
    """A node's interface: its name on the node (or guest), its link's name in the lab namespace, addresses."""

    node: str
    segment: str
    ifname: str
    lab_ifname: str
    mac: str
    v4: IPv4Interface
    v6: IPv6Interface


@dataclass(frozen=True)
class Route:
    """A static route of a node: destination ("default" or a subnet) and next hop, per address family."""

    v4_dst: str
    v4_via: str
    v6_dst: str
    v6_via: str


@dataclass
class Node:
    """A node of a built lab: kind, namespace (None for peers, which a runtime starts), interfaces, routes."""

    name: str
    kind: str
    netns: str | None
    interfaces: list[Interface]
    routes: list[Route] = field(default_factory=list)
    forward: bool = False
    masquerade: str | None = None
    forward_to: str | None = None

    def interface(self, segment: str | None = None) -> Interface:
        """The node's interface on segment (default: its first data interface)."""
        for i in self.interfaces:
            if (segment is None and i.segment != MANAGEMENT) or i.segment == segment:
                return i
        raise LabError(f"node {self.name!r} has no interface on segment {segment!r}")

    def address(self, segment: str | None = None, version: int = 4) -> str:
        """The node's IPv4 or IPv6 address (no prefix) on segment (default: its first data segment)."""
        i = self.interface(segment)
        return str(i.v4.ip if version == 4 else i.v6.ip)


def _mac(worker: int, node_index: int, link_index: int) -> str:
    return f"02:49:{worker:02x}:00:{node_index:02x}:{link_index:02x}"


def plan(topo: Topology, worker: int, run: str) -> tuple[dict[str, Segment], dict[str, Node]]:
    """The concrete segments and nodes of topo for one worker (pure: names and addresses, nothing created)."""
    segs = {s: Segment(s, f"br-{s}", addressing.segment_v4(worker, i), addressing.segment_v6(worker, i))
            for i, s in enumerate(topo.segments)}
    segs[MANAGEMENT] = Segment(MANAGEMENT, f"br-{MANAGEMENT}", addressing.management_v4(worker), addressing.management_v6(worker))
    nodes: dict[str, Node] = {}
    peers = 0
    for n_index, nd in enumerate(topo.nodes.values()):
        ifs = []
        for l_index, ld in enumerate(nd.links):
            s = segs[ld.segment]
            ifname = f"eth{l_index}" if nd.kind == "peer" else ld.segment
            ifs.append(Interface(nd.name, ld.segment, ifname, f"{nd.name}.{l_index}", _mac(worker, n_index, l_index),
                                 addressing.host_v4(s.v4, ld.host), addressing.host_v6(s.v6, ld.host)))
        if nd.kind == "peer":
            m = segs[MANAGEMENT]
            host = MANAGEMENT_HOST_BASE + peers
            peers += 1
            ifs.append(Interface(nd.name, MANAGEMENT, f"eth{len(nd.links)}", f"{nd.name}.m", _mac(worker, n_index, 0xFF),
                                 addressing.host_v4(m.v4, host), addressing.host_v6(m.v6, host)))
        ns = None if nd.kind == "peer" else labels.resource_name(run, worker, topo.name, nd.name)
        nodes[nd.name] = Node(nd.name, nd.kind, ns, ifs, [], nd.forward, nd.masquerade, nd.forward_to)
    for nd in topo.nodes.values():
        mine = {l.segment for l in nd.links}
        for r in nd.routes:
            via = next(i for i in nodes[r.via].interfaces if i.segment in mine)
            if r.to == "default":
                v4_dst = v6_dst = "default"
            else:
                v4_dst, v6_dst = str(segs[r.to].v4), str(segs[r.to].v6)
            nodes[nd.name].routes.append(Route(v4_dst, str(via.v4.ip), v6_dst, str(via.v6.ip)))
    return segs, nodes


def _nl(what: str, fn: Callable[[], T]) -> T:
    try:
        return fn()
    except NetlinkError as e:
        raise LabError(f"{what}: netlink error {e.code}: {e}") from e


class Lab:
    """A lab for one topology and worker; a context manager that builds on entry and tears down on exit.

    lab.segments / lab.nodes / lab.tester; lab.link_specs(peer) and lab.attach(peer) for runtime nodes;
    lab.guest_commands(peer) for their addresses and routes; lab.capture(dir); lab.ping(node, address).
    """

    def __init__(self, topology: str | Topology, run: str | None = None, worker: int | None = None) -> None:
        self.topology = load_topology(topology) if isinstance(topology, str) else topology
        self.run = labels.check_run_id(run) if run else labels.current_run_id()
        self.worker = labels.worker_index() if worker is None else worker
        self.name = labels.resource_name(self.run, self.worker, self.topology.name, "lab")
        self.segments, self.nodes = plan(self.topology, self.worker, self.run)
        self.tester: Tester | None = None
        self.timings: dict[str, float] = {}
        self.keep = False
        self._built = False
        self.capturer: Capturer | None = None
        self.on_close: list[Callable[[], object]] = []  # run first by close() (an external device's wire given back)

    # -- names and addresses -------------------------------------------------------------------
    @property
    def namespaces(self) -> list[str]:
        """Every namespace this lab creates: the lab namespace first, then one per tester/host/NAT node."""
        return [self.name, *(n.netns for n in self.nodes.values() if n.netns)]

    @property
    def built(self) -> bool:
        """True between build() and close()."""
        return self._built

    @property
    def bridges(self) -> list[str]:
        """The bridges in the lab namespace: one per segment plus the management bridge."""
        return [s.bridge for s in self.segments.values()]

    @property
    def management_address(self) -> str:
        """The lab namespace's own IPv4 address on the management segment (control traffic starts here)."""
        return str(addressing.host_v4(self.segments[MANAGEMENT].v4, 1).ip)

    def peers(self) -> list[Node]:
        """The peer nodes (started by a runtime), in topology order."""
        return [n for n in self.nodes.values() if n.kind == "peer"]

    def node(self, name: str) -> Node:
        """A node by name; LabError naming the topology if there is none."""
        if name not in self.nodes:
            raise LabError(f"topology {self.topology.name!r} has no node {name!r} (nodes: {', '.join(self.nodes)})")
        return self.nodes[name]

    # -- build and teardown --------------------------------------------------------------------
    def __enter__(self) -> "Lab":
        return self.build()

    def __exit__(self, *exc: object) -> None:
        if not self.keep:
            self.close()

    def build(self) -> "Lab":
        """Create namespaces, bridges, veths, addresses, routes, NAT rules and open the tester's sockets."""
        if self._built:
            return self
        t0 = time.perf_counter()
        _register(self)
        self._built = True
        try:
            netns.create(self.name)
            for n in self.nodes.values():
                if n.netns:
                    netns.create(n.netns)
            netns.run_in(self.name, self._build_lab_namespace)
            for n in self.nodes.values():
                if n.netns:
                    netns.run_in(n.netns, self._build_node_namespace, n)
                    if n.masquerade:
                        self._nat_rules(n)
            self.capturer = Capturer(self.name, {s.name: s.bridge for s in self.segments.values()}).open()
            tester = next(n for n in self.nodes.values() if n.kind == "tester")
            self.tester = Tester(tester.netns or "", [TesterAddress(i.segment, i.ifname, str(i.v4.ip), str(i.v6.ip))
                                                      for i in tester.interfaces]).open()
        except BaseException:
            self.close()
            raise
        self.timings["build"] = time.perf_counter() - t0
        return self

    def _build_lab_namespace(self) -> None:
        _sysctl("net/ipv6/conf/all/disable_ipv6", "1")
        _sysctl("net/ipv6/conf/default/disable_ipv6", "1")
        with IPRoute() as ipr:
            _nl("lo up", lambda: ipr.link("set", index=1, state="up"))
            for s in self.segments.values():
                _nl(f"bridge {s.bridge}", lambda: ipr.link("add", ifname=s.bridge, kind="bridge", br_stp_state=0, br_forward_delay=0))
                br = ipr.link_lookup(ifname=s.bridge)[0]
                _nl(f"bridge {s.bridge} up", lambda: ipr.link("set", index=br, state="up"))
                if s.name == MANAGEMENT:
                    _nl("management address", lambda: ipr.addr("add", index=br, address=self.management_address,
                                                                  prefixlen=s.v4.prefixlen))
            for n in self.nodes.values():
                if not n.netns:
                    continue
                for i in n.interfaces:
                    _nl(f"veth {i.lab_ifname}", lambda: ipr.link(
                        "add", ifname=i.lab_ifname, kind="veth",
                        peer={"ifname": i.ifname, "net_ns_fd": n.netns, "address": i.mac}))
                    self._enslave(ipr, i)

    def _enslave(self, ipr: IPRoute, i: Interface) -> None:
        found = ipr.link_lookup(ifname=i.lab_ifname)
        if not found:
            raise LabError(f"lab {self.name}: link {i.lab_ifname!r} of node {i.node!r} is not in the lab namespace")
        br = ipr.link_lookup(ifname=self.segments[i.segment].bridge)[0]
        _nl(f"{i.lab_ifname} into {self.segments[i.segment].bridge}",
            lambda: ipr.link("set", index=found[0], master=br, state="up"))

    def _build_node_namespace(self, n: Node) -> None:
        _sysctl("net/ipv6/conf/default/router_solicitations", "0")
        _sysctl("net/ipv6/conf/all/router_solicitations", "0")
        if n.forward:
            _sysctl("net/ipv4/ip_forward", "1")
            _sysctl("net/ipv6/conf/all/forwarding", "1")
        with IPRoute() as ipr:
            _nl("lo up", lambda: ipr.link("set", index=1, state="up"))
            for i in n.interfaces:
                idx = ipr.link_lookup(ifname=i.ifname)[0]
                _nl(f"{n.name} {i.ifname} up", lambda: ipr.link("set", index=idx, state="up"))
                _nl(f"{n.name} {i.ifname} {i.v4}", lambda: ipr.addr("add", index=idx, address=str(i.v4.ip), prefixlen=i.v4.network.prefixlen))
                _nl(f"{n.name} {i.ifname} {i.v6}", lambda: ipr.addr("add", index=idx, address=str(i.v6.ip),
                                                                    prefixlen=i.v6.network.prefixlen, flags=IFA_F_NODAD))
            for r in n.routes:
                for dst, via, fam in ((r.v4_dst, r.v4_via, 2), (r.v6_dst, r.v6_via, 10)):
                    kw = {"gateway": via, "family": fam}
                    if dst != "default":
                        kw["dst"] = dst
                    else:
                        kw["dst"] = "0.0.0.0/0" if fam == 2 else "::/0"
                    _nl(f"{n.name} route {dst} via {via}", lambda: ipr.route("add", **kw))

    def _nat_rules(self, n: Node) -> None:
        out = n.interface(n.masquerade).ifname
        forward = ""
        if n.forward_to:  # a port forward: IKE and NAT-T reach the node behind the router (a responder behind NAT)
            inside = {i.segment for i in n.interfaces} - {n.masquerade}
            to = next(i for i in self.node(n.forward_to).interfaces if i.segment in inside)
            forward = (" chain prerouting {\n  type nat hook prerouting priority dstnat; policy accept;\n"
                       f'  iifname "{out}" udp dport {{ 500, 4500 }} dnat to {to.v4.ip}\n }}\n')
        rules = ("table ip ipsi_nat {\n chain postrouting {\n  type nat hook postrouting priority srcnat; policy accept;\n"
                 f'  oifname "{out}" masquerade\n }}\n{forward}}}\n')
        assert n.netns
        r = netns.run_cmd(n.netns, ["nft", "-f", "-"], input=rules.encode())
        if r.returncode != 0:
            raise LabError(f"nft in {n.netns}: {r.stderr.strip()}")

    def close(self) -> None:
        """Tear everything down (idempotent): captures, tester sockets, node namespaces, the lab namespace."""
        if not self._built:
            return
        t0 = time.perf_counter()
        errors: list[LabError] = []
        while self.on_close:
            self.on_close.pop()()
        if self.capturer:
            try:
                self.capturer.close()
            except LabError as e:
                errors.append(e)
            self.capturer = None
        if self.tester:
            self.tester.close()
        for name in reversed(self.namespaces):
            try:
                netns.delete(name)
            except LabError as e:
                errors.append(e)
        self._built = False
        _unregister(self)
        self.timings["teardown"] = time.perf_counter() - t0
        if errors:
            raise errors[0]

    # -- peers -------------------------------------------------------------------------------
    def link_specs(self, peer: str) -> list[LinkSpec]:
        """The links a runtime gives peer: guest name, MAC, and the name its other end gets in the lab namespace."""
        n = self.node(peer)
        if n.kind != "peer":
            raise LabError(f"node {peer!r} is a {n.kind}, not a peer")
        return [LinkSpec(i.ifname, i.mac, i.lab_ifname) for i in n.interfaces]

    def attach(self, peer: str) -> None:
        """Enslave a started peer's links (already in the lab namespace) to their bridges."""
        n = self.node(peer)

        def body() -> None:
            with IPRoute() as ipr:
                for i in n.interfaces:
                    self._enslave(ipr, i)

        netns.run_in(self.name, body)

    def check_links(self, peer: str, timeout: float = 20.0) -> dict[str, float]:
        """ARP-probe each link of a started, configured peer from its lab end (harness.lab.arp): {link: seconds};
        LabError naming the link that carries no frames both ways (a lab fault: no case may start on it)."""
        from harness.lab import arp

        n = self.node(peer)
        out = {}
        for i in n.interfaces:
            took = netns.run_in(self.name, arp.probe, i.lab_ifname, str(i.v4.ip), timeout)
            if took is None:
                raise LabError(f"lab {self.name}: peer {peer!r} does not answer ARP for {i.v4.ip} on {i.ifname} "
                               f"(lab link {i.lab_ifname}) within {timeout:.0f} s: the link carries no frames both ways")
            out[i.ifname] = took
        return out

    def guest_commands(self, peer: str) -> list[list[str]]:
        """The commands (argv lists) that give a started peer its addresses, routes and forwarding."""
        n = self.node(peer)
        cmds: list[list[str]] = [["ip", "link", "set", "dev", "lo", "up"]]
        for i in n.interfaces:
            cmds += [["ip", "link", "set", "dev", i.ifname, "up"],
                     ["ip", "-4", "addr", "add", str(i.v4), "dev", i.ifname],
                     ["ip", "-6", "addr", "add", str(i.v6), "dev", i.ifname, "nodad"]]
        for r in n.routes:
            cmds += [["ip", "-4", "route", "replace", r.v4_dst, "via", r.v4_via],
                     ["ip", "-6", "route", "replace", r.v6_dst, "via", r.v6_via]]
        if n.forward:
            cmds += [["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward; echo 1 > /proc/sys/net/ipv6/conf/all/forwarding"]]
        return cmds

    def configure_guest(self, peer: str, exec_: Callable[[list[str]], tuple[int, str, str]]) -> None:
        """Run guest_commands(peer) through exec_ (e.g. node.exec); LabError with the output if one fails."""
        for argv in self.guest_commands(peer):
            rc, out, err = exec_(argv)
            if rc != 0:
                raise LabError(f"peer {peer!r}: {' '.join(argv)} exited {rc}: {(err or out).strip()}")

    # -- using the lab -------------------------------------------------------------------------
    def capture(self, directory: str | Path) -> Capture:
        """A started capture of every segment into directory/<segment>.pcap (one at a time per lab)."""
        if self.capturer is None:
            raise LabError(f"lab {self.name}: not built")
        return Capture(self.capturer, directory).start()

    def exec(self, node: str, argv: list[str], timeout: float = 10) -> subprocess.CompletedProcess[str]:
        """Run a command in a tester/host/NAT node's namespace (peers: use their runtime's exec)."""
        n = self.node(node)
        if not n.netns:
            raise LabError(f"node {node!r} is a peer: run commands through its runtime node")
        return netns.run_cmd(n.netns, argv, timeout=timeout)

    def ping(self, node: str, address: str, count: int = 1, timeout: float = 2.0) -> bool:
        """True if all `count` echo requests from node (tester/host/NAT) to address are answered."""
        n = self.node(node)
        if not n.netns:
            raise LabError(f"node {node!r} is a peer: ping from it through its runtime node")
        return ping_from(n.netns, address, count=count, timeout=timeout) == count

    def connect_tcp(self, address: str, port: int, timeout: float = 5.0) -> socket.socket:
        """A TCP connection opened inside the lab namespace (control traffic over the management segment).

        OSError (e.g. ConnectionRefusedError) passes through: callers waiting for a daemon retry on it.
        """
        def connect() -> socket.socket:
            s = socket.create_connection((address, port), timeout=timeout)
            s.settimeout(None)
            return s

        return netns.run_in(self.name, connect)

    def in_lab(self, fn: Callable[..., T], *args: object) -> T:
        """Call fn inside the lab namespace (e.g. to open a control socket on the management segment)."""
        return netns.run_in(self.name, fn, *args)

    def describe(self) -> str:
        """How to look at and remove this lab by hand (printed for --keep-lab)."""
        lines = [f"lab {self.name} (topology {self.topology.name}, run {self.run}, worker {self.worker}):"]
        lines += [f"  ip -n {ns} -br addr" for ns in self.namespaces]
        lines += [f"  ip netns exec {self.name} bridge link",
                  f"  remove it: ipsec-interop clean --run {self.run}"]
        return "\n".join(lines)


def _sysctl(key: str, value: str) -> None:
    try:
        Path("/proc/sys", key).write_text(value)
    except OSError as e:
        raise LabError(f"sysctl {key}={value}: {e}") from e


# -- process-wide registry: tear down on exit, SIGTERM and SIGHUP -----------------------------------
_LIVE: list[Lab] = []
_LOCK = threading.Lock()
_OWNED: set[str] = set()
_HANDLERS = False


def _register(lab: Lab) -> None:
    global _HANDLERS
    with _LOCK:
        if lab.run not in _OWNED:
            labels.register_owner(lab.run)
            _OWNED.add(lab.run)
        _LIVE.append(lab)
        if not _HANDLERS:
            _HANDLERS = True
            atexit.register(_teardown_all)
            if threading.current_thread() is threading.main_thread():
                for sig in (signal.SIGTERM, signal.SIGHUP):
                    if signal.getsignal(sig) in (signal.SIG_DFL, None):
                        signal.signal(sig, _interrupt)


def _unregister(lab: Lab) -> None:
    with _LOCK:
        if lab in _LIVE:
            _LIVE.remove(lab)


def _interrupt(signum: int, frame: object) -> None:
    # like Ctrl-C: pytest and context managers unwind, and the labs are torn down on the way out
    raise KeyboardInterrupt(f"signal {signum}")


def _teardown_all() -> None:
    for lab in list(_LIVE):
        if not lab.keep:
            try:
                lab.close()
            except LabError as e:
                print(f"ipsec-interop: teardown of {lab.name}: {e}")
    if not any(lab.keep for lab in _LIVE):
        for run in _OWNED:
            labels.release_owner(run)
