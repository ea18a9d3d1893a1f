"""The external runtime: a device the harness does not start (a vendor appliance), described by a profile file.

The profile (harness.runtime.profile, format in README.md) says who the device is, what it supports and how it
reaches the lab (harness.lab.device_wire). The device cannot be reconfigured: exec, spawn and file access raise
CannotReconfigure, which the plugin turns into a skip naming the profile. The lab drives it through
harness.peers.external.ExternalAdapter (the peer protocol: what the profile declares, the rest refused).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.errors import CannotReconfigure, ConfigError
from harness.runtime.base import DEFAULT_EXEC_TIMEOUT, ExecResult, LinkSpec, Node, NodeSpec, Runtime
from harness.runtime.profile import LAB_V4, LAB_V6, Credentials, Profile, load_profile

__all__ = ["LAB_V4", "LAB_V6", "Credentials", "ExternalNode", "ExternalRuntime", "Profile", "load_profile"]


class ExternalNode(Node):
    """A device on the lab wire that the harness neither starts nor configures."""

    runtime = "external"

    def __init__(self, profile: Profile, spec: NodeSpec) -> None:
        self.profile = profile
        self.name, self.image, self.version, self.kernel, self.role = profile.name, profile.name, profile.version, profile.kernel, spec.role
        self.wire: Any = None  # harness.lab.device_wire.DeviceWire, laid by the lab (harness.lab.peering)

    def _refuse(self, what: str) -> CannotReconfigure:
        return CannotReconfigure(f"{self.name}: external device (profile {self.profile.path}) cannot {what}")

    def exec(self, argv: Sequence[str], timeout: float = DEFAULT_EXEC_TIMEOUT,
             input: bytes | str | None = None) -> ExecResult:
        """Refused: the harness cannot run commands on an external device."""
        raise self._refuse(f"run {' '.join(argv)}")

    def spawn(self, argv: Sequence[str], log_path: str) -> int:
        """Refused: the harness cannot start processes on an external device."""
        raise self._refuse(f"start {' '.join(argv)}")

    def put_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        """Refused: the harness cannot write files on an external device."""
        raise self._refuse(f"write {path}")

    def get_file(self, path: str) -> bytes:
        """Refused: the harness cannot read files on an external device."""
        raise self._refuse(f"read {path}")

    def logs(self) -> str:
        """No logs: what the profile says instead."""
        return f"external device {self.name} {self.version} at {self.profile.ipv4 or self.profile.ipv6} (profile {self.profile.path})"

    def stop(self) -> None:
        """Nothing to stop (the harness did not start the device): only the wire the lab laid to it is taken away."""
        wire, self.wire = self.wire, None
        if wire is not None:
            wire.disconnect()


class ExternalRuntime(Runtime):
    """A device from a profile file."""

    name = "external"

    def __init__(self, profile: str | Path | None = None, **_: object) -> None:
        self.profile_path = profile

    def unavailable(self) -> str | None:
        """Why the profile cannot be used (missing or invalid), or None."""
        if not self.profile_path:
            return "--runtime external needs --profile FILE"
        try:
            load_profile(self.profile_path)
        except ConfigError as e:
            return str(e)
        return None

    def start(self, spec: NodeSpec, lab_netns: str, links: Sequence[LinkSpec]) -> ExternalNode:
        """The device as a node (nothing is started; links are the device's own cabling)."""
        if not self.profile_path:
            raise ConfigError("--runtime external needs --profile FILE")
        return ExternalNode(load_profile(self.profile_path), spec)


RUNTIME_CLASS = ExternalRuntime
