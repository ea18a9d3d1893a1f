"""The PeerAdapter protocol and the neutral SA records every adapter returns.

An adapter drives one reference peer running in a runtime node (harness.runtime.base.Node):
it renders a neutral Connection into the peer's native configuration, starts and stops
negotiations, and reads back IKE and Child SAs. Counters and keys come from the kernel
(`ip -s xfrm state`) where the implementation does not report them itself, joined by SPI.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Protocol, runtime_checkable

from harness.errors import DaemonDied, LabError, UnknownTransform
from harness.keys import IpsecSaKeys
from harness.peers.algorithms import Algorithms
from harness.peers.connection import Connection
from harness.peers.xfrm import XfrmAlgorithm, XfrmPolicy, XfrmState, parse_xfrm_policy, parse_xfrm_state


@dataclass
class ChildSaRecord:
    """A Child SA (one ESP/AH SA pair) as a peer reports it; SPIs are 32-bit integers (inbound = ours)."""

    name: str
    protocol: str               # "ESP" | "AH"
    mode: str                   # "transport" | "tunnel"
    spi_in: int
    spi_out: int
    state: str = ""
    encr: str | None = None     # the implementation's spelling, e.g. AES_GCM_16_128 / AES_GCM_16
    integ: str | None = None
    ke: str | None = None       # PFS group of the Child SA, if any
    encap: bool = False         # UDP encapsulated (RFC 3948)
    bytes_in: int = 0
    bytes_out: int = 0
    packets_in: int = 0
    packets_out: int = 0
    local_ts: list[str] = field(default_factory=list)
    remote_ts: list[str] = field(default_factory=list)
    serial: int | None = None   # strongSwan unique id / Libreswan state number
    keys: dict[str, bytes] = field(default_factory=dict)  # encr_in, encr_out, integ_in, integ_out (kernel keymat)
    raw: dict[str, object] = field(default_factory=dict)  # what the implementation said, unparsed


@dataclass
class IkeSaRecord:
    """An IKE SA as a peer reports it: SPIs as 64-bit integers, algorithms, identities and its Child SAs."""

    name: str
    state: str
    local_addr: str
    remote_addr: str
    spi_i: int | None = None
    spi_r: int | None = None
    initiator: bool | None = None
    local_id: str = ""
    remote_id: str = ""
    encr: str | None = None
    integ: str | None = None
    prf: str | None = None
    ke: str | None = None
    serial: int | None = None   # strongSwan unique id / Libreswan state number
    children: list[ChildSaRecord] = field(default_factory=list)
    keys: dict[str, bytes] = field(default_factory=dict)  # SK_ei, SK_er, SK_ai, SK_ar when exported
    raw: dict[str, object] = field(default_factory=dict)

    @property
    def established(self) -> bool:
        """True if the implementation calls this IKE SA established."""
        return "ESTABLISHED" in self.state.upper()


@runtime_checkable
class PeerAdapter(Protocol):
    """What every reference peer's adapter does (strongSwan via vici, Libreswan via whack/addconn)."""

    implementation: str

    def start(self) -> None:
        """Start the IKE daemon in the node (idempotent) and wait until it accepts commands."""

    def load(self, connection: Connection) -> None:
        """Render and load one connection (credentials included), replacing one of the same name."""

    def unload(self, name: str) -> None:
        """Remove a loaded connection (its SAs are deleted with it)."""

    def initiate(self, name: str, timeout: float = 30.0) -> IkeSaRecord:
        """Negotiate the connection's IKE SA and Child SA; LabError with the log tail if not established."""

    def initiate_ike(self, name: str, timeout: float = 30.0) -> IkeSaRecord:
        """Negotiate the connection's IKE SA without a Child SA (RFC 6023); UnsupportedFeature if the peer cannot."""

    def create_child(self, name: str, timeout: float = 30.0) -> None:
        """Create the connection's Child SA on its established IKE SA (CREATE_CHILD_SA, RFC 7296 s1.3.1)."""

    def terminate(self, name: str, timeout: float = 30.0) -> None:
        """Delete the connection's IKE SA (and its Child SAs)."""

    def rekey(self, name: str, what: str = "child") -> None:
        """Rekey the connection's IKE SA ("ike") or Child SA ("child")."""

    def delete_child(self, name: str, spi_in: int) -> None:
        """Delete the Child SA that receives on spi_in (INFORMATIONAL Delete), keeping its IKE SA."""

    def list_sas(self) -> list[IkeSaRecord]:
        """The peer's IKE SAs with their Child SAs, SPIs, algorithms, counters and kernel keys."""

    def xfrm_state(self) -> list[XfrmState]:
        """The node's kernel SAs (`ip -s xfrm state`)."""

    def xfrm_policy(self) -> list[XfrmPolicy]:
        """The node's kernel policies (`ip -s xfrm policy`)."""

    def logs(self) -> str:
        """The daemon's log so far."""

    def version(self) -> str:
        """The implementation and version, e.g. 'strongSwan 5.9.8' or 'Libreswan 4.10'."""

    def algorithms(self) -> Algorithms:
        """The transforms the end lists as its own (harness.peers.algorithms), for IKE and for Child SAs."""

    def stop(self) -> None:
        """Stop the daemon (by pid) and forget the loaded connections."""


class NodeBase:
    """What both adapters share: the node, running commands in it, reading the kernel's xfrm state."""

    implementation = ""

    def __init__(self, node: object) -> None:
        self.node = node
        self.pid: int | None = None  # the daemon's pid in the node, once started
        self.timings: dict[str, float] = {}
        self.connections: dict[str, Connection] = {}

    def stop(self) -> None:
        """Stop the daemon by its pid (SIGTERM) and forget the loaded connections."""
        if self.pid is not None:
            self.node.exec(["kill", str(self.pid)], timeout=10)  # type: ignore[attr-defined]
            self.pid = None
        self.connections.clear()

    def run(self, argv: list[str], timeout: float = 30.0, check: bool = True, input: str | None = None) -> str:
        """Run argv in the node; its stdout (LabError naming the command and its output if it fails and check)."""
        rc, out, err = self.node.exec(argv, timeout=timeout, input=input)  # type: ignore[attr-defined]
        if check and rc != 0 and not self.daemon_alive():
            raise DaemonDied(f"{self.implementation} on {getattr(self.node, 'name', '?')}: its daemon (pid {self.pid}) "
                             f"is gone (crashed): {' '.join(argv)[:200]} exited {rc}: {(err or out).strip()[-500:]}")
        if check and rc != 0:
            raise LabError(f"{self.implementation} on {getattr(self.node, 'name', '?')}: {' '.join(argv)} exited {rc}: "
                           f"{(err or out).strip()[-2000:]}")
        return str(out)

    def daemon_alive(self) -> bool:
        """Whether the daemon this adapter started still runs (not exited, not a zombie); True before it is started."""
        if self.pid is None:
            return True
        rc, out, _ = self.node.exec(["cat", f"/proc/{self.pid}/stat"], timeout=10)  # type: ignore[attr-defined]
        return rc == 0 and out.rsplit(")", 1)[-1].split()[:1] != ["Z"]

    def xfrm_state(self) -> list[XfrmState]:
        """The node's kernel SAs (`ip -s xfrm state`)."""
        return parse_xfrm_state(self.run(["ip", "-s", "xfrm", "state"]))

    def xfrm_policy(self) -> list[XfrmPolicy]:
        """The node's kernel policies (`ip -s xfrm policy`)."""
        return parse_xfrm_policy(self.run(["ip", "-s", "xfrm", "policy"]))

    def sa_keys(self) -> list[IpsecSaKeys]:
        """The keys of the node's kernel ESP/AH SAs (what the lab writes to keys.json beside each capture)."""
        return sa_keys(self.xfrm_state())

    def read_logs(self, *paths: str) -> str:
        """The text of those of the node's log files that exist, joined in order."""
        parts = []
        for path in paths:
            try:
                parts.append(self.node.get_file(path).decode(errors="replace"))  # type: ignore[attr-defined]
            except LabError:
                continue
        return "\n".join(p for p in parts if p)


def child_serial(sas: list[IkeSaRecord], name: str, spi_in: int, who: str) -> int:
    """The implementation's number for connection name's Child SA receiving on spi_in; LabError if it has none."""
    for sa in sas:
        for c in sa.children:
            if sa.name == name and c.spi_in == spi_in and c.serial is not None:
                return c.serial
    raise LabError(f"{who}: connection {name!r} has no Child SA receiving on SPI 0x{spi_in:08x}")


def join_kernel(children: list[ChildSaRecord], states: list[XfrmState]) -> None:
    """Fill the Child SA records' kernel keys (and packet counters where the peer has none) from xfrm states by SPI."""
    by_spi = {(s.proto.upper(), s.spi): s for s in states}
    for c in children:
        for direction, spi in (("in", c.spi_in), ("out", c.spi_out)):
            st = by_spi.get((c.protocol.upper(), spi))
            if st is None:
                continue
            for a in st.algorithms:
                kind = "encr" if a.kind in ("enc", "aead") else "integ" if a.kind.startswith("auth") else a.kind
                c.keys[f"{kind}_{direction}"] = a.key
            if st.current_packets is not None and not c.raw.get("packets_from_peer"):
                setattr(c, f"packets_{direction}", st.current_packets)
            if st.current_bytes is not None and not c.raw.get("bytes_from_peer"):
                setattr(c, f"bytes_{direction}", st.current_bytes)
            if st.encap:
                c.encap = True


_KERNEL_ALGS = json.loads(resources.files("harness.peers").joinpath("xfrm_algorithms.json").read_text())


def kernel_transform(alg: XfrmAlgorithm) -> tuple[str, str]:
    """("encr"|"integ", IANA name) of a kernel algorithm line; UnknownTransform if the table lacks it."""
    key = f"{alg.kind} {alg.name} {alg.bits if alg.bits is not None else '-'}"
    for kind in ("encr", "integ"):
        if key in _KERNEL_ALGS[kind]:
            return kind, _KERNEL_ALGS[kind][key]
    raise UnknownTransform(f"kernel algorithm {key!r} is not in harness/peers/xfrm_algorithms.json")


def sa_keys(states: list[XfrmState]) -> list[IpsecSaKeys]:
    """The keys of the kernel's ESP/AH SAs in the project's keys form (for keys.json and Wireshark's esp_sa)."""
    out = []
    for st in states:
        if st.proto not in ("esp", "ah") or not st.algorithms:
            continue  # no keys: an SPI allocated for a Child SA still being negotiated (a rekey in flight)
        kw: dict[str, object] = {}
        for a in st.algorithms:
            kind, name = kernel_transform(a)
            if kind == "integ" and name == "AUTH_AES_GMAC":  # AH with GMAC: the key length names the transform
                name = f"AUTH_AES_{8 * (len(a.key) - 4)}_GMAC"
            if kind == "encr":
                kw["encryption"], kw["encryption_key"] = name, a.key
            else:
                kw["integrity"], kw["integrity_key"] = name, a.key
        out.append(IpsecSaKeys(protocol=st.proto, spi=st.spi, src=st.src, dst=st.dst, mode=st.mode or "transport",
                               esn=st.esn, **kw))  # type: ignore[arg-type]
    return out
