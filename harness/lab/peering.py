"""Where the lab meets the runtimes (harness.runtime) and the peer adapters (harness.peers).

start_peer() starts one peer node on a lab's links through the selected runtime, enslaves its
links, gives it its addresses and wraps it in that peer's adapter. Anything missing on this host
(no runtime module, no image, no daemon, no adapter) raises Unavailable, which tests turn into a
skip that says why.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, LabUnavailable
from harness.lab import labels
from harness.lab.lab import Lab
from harness.lab.topology import MANAGEMENT

Unavailable = LabUnavailable


def _module(name: str, why: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and (name == e.name or name.startswith(e.name + ".")):
            raise Unavailable(f"{name} is not available ({why})") from None
        raise


def built_peers() -> tuple[list[str], str]:
    """(names of peers whose image is built, e.g. strongswan-5.9; the reason when there is none)."""
    try:
        images = _module("harness.runtime.images", "the runtime helper's image module lists built peers")
        images.docker_client(timeout=5)
    except Unavailable as e:
        return [], str(e)
    built = list(images.built_peers())
    return built, ("" if built else "no peer image is built: run `ipsec-interop setup`")


def resolve_peer(name: str) -> str:
    """The built image name for a --peer value (exact name, or a family such as "strongswan": its newest)."""
    images = _module("harness.runtime.images", "the runtime helper's image module lists built peers")
    return str(images.find_image(name).name)


def external_peer_name(profile: str | None) -> str:
    """The peer name an external device's profile declares (its file stem if it declares none)."""
    if not profile:
        raise ConfigError("--runtime external needs --profile FILE")
    return Path(profile).stem


@dataclass
class PeerHandle:
    """A started peer: the runtime node, the adapter driving it, and what the report names."""

    name: str
    node: Any
    adapter: Any
    runtime: str
    kernel: str
    version: str = ""

    def sa_keys(self) -> list[Any]:
        """The keys of the peer's installed SAs (IpsecSaKeys) for keys.json, if its adapter can read them."""
        reader = getattr(self.adapter, "sa_keys", None)
        return list(reader()) if callable(reader) else []

    def stop(self) -> None:
        """Stop the peer's node (its runtime stops it by pid or container id; idempotent)."""
        self.node.stop()


ADAPTER_MODULES = {"strongswan": "harness.peers.strongswan", "libreswan": "harness.peers.libreswan"}


def adapter_module(role: str) -> Any:
    """The module of the adapter for an implementation; Unavailable if it is unknown or not there."""
    if role not in ADAPTER_MODULES:
        raise Unavailable(f"no adapter for peer implementation {role!r} (known: {', '.join(ADAPTER_MODULES)})")
    return _module(ADAPTER_MODULES[role], f"the {role} adapter")


def make_adapter(role: str, node: Any, lab: Lab, node_name: str) -> Any:
    """The adapter for a started node by implementation; strongSwan's vici is reached over the management segment."""
    mod = adapter_module(role)
    if role == "strongswan":
        address, port = lab.node(node_name).address(MANAGEMENT), mod.VICI_PORT
        return mod.StrongswanAdapter(node, f"tcp://{address}:{port}", lambda: lab.connect_tcp(address, port))
    return mod.LibreswanAdapter(node)


def start_peer(lab: Lab, node: str, peer: str, runtime: str, profile: str | None) -> PeerHandle:
    """Start `peer` as lab node `node` under `runtime` (auto|docker|uml|external); Unavailable if it cannot run here."""
    rt_mod = _module("harness.runtime", "the runtime helper's package starts peer nodes")
    role = peer.split("-")[0]
    if runtime != "external":
        adapter_module(role)  # before a guest boots for nothing
    try:
        rt = rt_mod.get_runtime(runtime, profile=profile) if runtime == "external" else rt_mod.get_runtime(runtime)
    except ModuleNotFoundError as e:
        if not (e.name or "").startswith("harness.runtime"):
            raise
        raise Unavailable(f"runtime {runtime!r}: {e.name} is not available yet") from None
    reason = rt.unavailable()
    if reason:
        raise Unavailable(f"runtime {rt.name}: {reason}")
    spec = rt_mod.NodeSpec(name=f"{lab.topology.name}-{node}", image=peer, role=role,
                           labels={labels.DOCKER_LABEL: lab.run}, run=lab.run, worker=lab.worker)
    started = rt.start(spec, lab.name, lab.link_specs(node))
    if started.runtime == "external":
        # a device the lab only wires (harness.lab.device_wire); its adapter raises CannotReconfigure for whatever
        # needs the device reconfigured or read, which the plugin reports as a skip naming the profile key
        return _external(lab, node, started)
    try:
        lab.attach(node)
        lab.configure_guest(node, lambda argv: tuple(started.exec(argv, timeout=10)))
        lab.check_links(node)
        adapter = make_adapter(spec.role, started, lab, node)
        adapter.start()
    except BaseException:
        started.stop()
        raise
    return PeerHandle(peer, started, adapter, started.runtime, started.kernel, started.version)


def _external(lab: Lab, node: str, started: Any) -> PeerHandle:
    """Wire an external device to the lab as node `node` at the addresses its profile gives; Unavailable without [wire]."""
    import dataclasses
    from ipaddress import IPv4Interface, IPv6Interface

    from harness.lab.device_wire import DeviceWire, Ends
    from harness.peers.external import ExternalAdapter

    profile = started.profile
    if profile.wire is None:
        raise Unavailable(f"profile {profile.path}: wire: missing, so the device cannot reach the lab "
                          f"(kind = \"netns\" or \"interface\")")
    n = lab.node(node)
    i = n.interface()
    i = dataclasses.replace(i, v4=IPv4Interface(f"{profile.ipv4}/32") if profile.ipv4 else i.v4,
                            v6=IPv6Interface(f"{profile.ipv6}/128") if profile.ipv6 else i.v6)
    n.interfaces = [i]  # its own addresses; no management link: the harness has no agent on it
    tester = next(t for t in lab.nodes.values() if t.kind == "tester")
    if not any(t.segment == i.segment for t in tester.interfaces):
        raise Unavailable(f"profile {profile.path}: wire: the device is wired to the tester's own segment, and topology "
                          f"{lab.topology.name!r} puts the tester elsewhere (behind a NAT router)")
    ti = tester.interface(i.segment)
    seg = lab.segments[i.segment]
    ends = Ends(lab.name, i.lab_ifname, seg.bridge, tester.netns or "", ti.ifname, str(ti.v4.ip), str(ti.v6.ip),
                str(seg.v4), str(seg.v6), lab.worker)
    wire = DeviceWire(profile, ends).connect()
    started.wire = wire
    lab.on_close.append(wire.disconnect)  # given back on Ctrl-C or exit too (idempotent)
    try:
        if profile.wire.kind == "netns":
            lab.check_links(node)
    except BaseException:
        wire.disconnect()
        raise
    return PeerHandle(started.name, started, ExternalAdapter(profile), "external", started.kernel, started.version)
