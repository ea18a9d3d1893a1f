"""The runtime protocol: how a peer's image becomes a running node (docker, uml) or a described one (external).

A Runtime starts a Node from a NodeSpec inside a lab network namespace, giving it one link per LinkSpec:
the guest sees `guest_ifname` with `mac`, the lab namespace sees `host_ifname` (NETWORK enslaves it to a
bridge after start() returns). Addresses are set afterwards through node.exec(["ip", ...]).

start() returns only when the guest's init has finished ("ready"); on timeout it raises LabError with
the guest's log tail. node.exec() works without any guest address: the control channel is the in-guest
agent (peers/common/ipsi-agent) over a unix socket (docker) or a serial line (uml), never the lab network.
Every container, UML guest and process is named `ipsi-<RUN>-<W>-<name>`, labelled with the run, recorded
under /run/ipsec-interop/<RUN>/pids/ and stopped by pid or container id, never by name.
"""
from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import NamedTuple

from harness.errors import LabError

RUNTIMES = ("docker", "uml", "external")
DEFAULT_EXEC_TIMEOUT = 30.0


@dataclass(frozen=True)
class LinkSpec:
    """One link of a node: its name and MAC inside the guest, and the name of its other end in the lab namespace."""

    guest_ifname: str
    mac: str
    host_ifname: str


@dataclass(frozen=True)
class NodeSpec:
    """What to start: a short node name (unique per run and worker), the image, the peer role, labels, env."""

    name: str
    image: str
    role: str
    labels: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    run: str | None = None      # default: labels.current_run_id()
    worker: int | None = None   # default: labels.worker_index()
    ready_timeout: float | None = None  # default: the runtime's own


class ExecResult(NamedTuple):
    """A finished command in a guest: exit status (negative: killed by that signal), stdout, stderr (text)."""

    rc: int
    stdout: str
    stderr: str


class Node(ABC):
    """A started peer: a container, a UML guest, or an external device; a context manager that stops it."""

    name: str            # the resource name ipsi-<RUN>-<W>-<spec.name>
    runtime: str         # "docker" | "uml" | "external"
    kernel: str          # `uname -r` inside the node
    image: str           # image name (e.g. "strongswan-5.9") or profile name (external)
    version: str         # the peer's exact package version (from the image) or the profile's version
    role: str            # "strongswan" | "libreswan" | ...

    @abstractmethod
    def exec(self, argv: Sequence[str], timeout: float = DEFAULT_EXEC_TIMEOUT,
             input: bytes | str | None = None) -> ExecResult:
        """Run argv in the node and wait; LabError (with the node's log tail) if it outlives timeout."""

    @abstractmethod
    def spawn(self, argv: Sequence[str], log_path: str) -> int:
        """Start a long-running process in the node (stdout+stderr to log_path in the node); its pid there."""

    @abstractmethod
    def put_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        """Write a file in the node atomically (parent folders created)."""

    @abstractmethod
    def get_file(self, path: str) -> bytes:
        """Read a file from the node; LabError naming the path if it cannot be read."""

    @abstractmethod
    def logs(self) -> str:
        """The node's console / init log so far."""

    @abstractmethod
    def stop(self) -> None:
        """Stop the node (idempotent), by pid or container id; remove what start() created."""

    @property
    def alive(self) -> bool:
        """True while the node runs (external devices: always)."""
        return True

    def __enter__(self) -> "Node":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {getattr(self, 'name', '?')} {getattr(self, 'image', '?')} on {getattr(self, 'kernel', '?')}>"


class Runtime(ABC):
    """A way to run peers: start(spec, lab_netns, links) -> Node."""

    name: str

    @abstractmethod
    def unavailable(self) -> str | None:
        """None if this runtime can start nodes here, else the reason it cannot (for a skip message)."""

    @abstractmethod
    def start(self, spec: NodeSpec, lab_netns: str, links: Sequence[LinkSpec]) -> Node:
        """Start spec's image as a node whose links appear in lab_netns; return once the guest is ready."""


def get_runtime(name: str, **kwargs: object) -> Runtime:
    """The runtime called name ("docker", "uml", "external" or "auto": the probe's choice), constructed with kwargs."""
    if name == "auto":
        from harness.runtime.probe import probe

        name = probe().choice
    if name not in RUNTIMES:
        raise LabError(f"unknown runtime {name!r} (known: auto, {', '.join(RUNTIMES)})")
    module = importlib.import_module(f"harness.runtime.{name}")
    return module.RUNTIME_CLASS(**kwargs)
