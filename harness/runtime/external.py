"""The external runtime: a device the harness does not start (a vendor appliance), described by a profile file.

A profile is TOML:

    name = "vendor-gw"                 # the peer name in reports (default: the file's stem)
    version = "7.2.1"                  # what the report shows as its version
    kernel = "VendorOS 7.2"            # what the report shows as its kernel (optional)
    [address]
    ipv4 = "198.18.0.3"                # on the lab wire; only 198.18.0.0/15 and 2001:db8::/32
    ipv6 = "2001:db8::3"               # optional
    [identity]
    local = "gw.example.net"           # the IKE identity the device sends (IDr)
    remote = "tester.example.net"      # the identity it expects from the tester (IDi)
    [credentials]
    psk = "..."                        # or psk_file = "secret.txt", or certificate/key/ca paths
    [proposals]
    ike = ["aes256-sha256-modp2048"]   # strongSwan proposal syntax (harness/ike/proposals.py)
    esp = ["aes128gcm16"]
    ah = []

Relative paths are relative to the profile file. The device cannot be reconfigured: exec, spawn and file
access raise CannotReconfigure, which the plugin turns into a skip naming the profile.
The lab drives it through harness.peers.external.ExternalAdapter (the peer protocol, refusing the same way).
"""
from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import CannotReconfigure, ConfigError
from harness.runtime.base import DEFAULT_EXEC_TIMEOUT, ExecResult, LinkSpec, Node, NodeSpec, Runtime

LAB_V4, LAB_V6 = "198.18.0.0/15", "2001:db8::/32"


@dataclass(frozen=True)
class Credentials:
    """How the device authenticates: a PSK, or certificate + key + CA files (paths resolved)."""

    psk: bytes | None = None
    certificate: Path | None = None
    key: Path | None = None
    ca: Path | None = None


@dataclass(frozen=True)
class Profile:
    """A parsed external device profile."""

    path: Path
    name: str
    version: str
    kernel: str
    ipv4: str | None
    ipv6: str | None
    local_id: str
    remote_id: str
    credentials: Credentials
    proposals: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def _get(d: Mapping[str, Any], key: str, typ: type, path: Path, where: str, required: bool = True) -> Any:
    name = f"{where}.{key}" if where else key
    if key not in d:
        if required:
            raise ConfigError(f"{path}: {name}: missing")
        return None
    v = d[key]
    if not isinstance(v, typ):
        raise ConfigError(f"{path}: {name}: expected {typ.__name__}, got {type(v).__name__}")
    return v


def _address(v: str | None, version: int, path: Path, key: str) -> str | None:
    from ipaddress import ip_address, ip_network

    if v is None:
        return None
    try:
        a = ip_address(v)
    except ValueError:
        raise ConfigError(f"{path}: {key}: {v!r} is not an IP address") from None
    if a.version != version or a not in ip_network(LAB_V4 if version == 4 else LAB_V6):
        raise ConfigError(f"{path}: {key}: {v} is outside the lab's {LAB_V4 if version == 4 else LAB_V6}")
    return str(a)


def _file(v: str | None, path: Path, key: str) -> Path | None:
    if v is None:
        return None
    p = (path.parent / v).resolve()
    if not p.is_file():
        raise ConfigError(f"{path}: {key}: no such file {p}")
    return p


def load_profile(path: str | Path) -> Profile:
    """Parse and check a profile; ConfigError naming the file and the key on any fault."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not TOML: {e}") from None
    name = _get(data, "name", str, path, "", required=False) or path.stem
    version = _get(data, "version", str, path, "")
    kernel = _get(data, "kernel", str, path, "", required=False) or "unknown (external device)"
    addr = _get(data, "address", dict, path, "")
    ipv4 = _address(_get(addr, "ipv4", str, path, "address", required=False), 4, path, "address.ipv4")
    ipv6 = _address(_get(addr, "ipv6", str, path, "address", required=False), 6, path, "address.ipv6")
    if not ipv4 and not ipv6:
        raise ConfigError(f"{path}: address: needs ipv4 or ipv6")
    ident = _get(data, "identity", dict, path, "")
    local_id = _get(ident, "local", str, path, "identity")
    remote_id = _get(ident, "remote", str, path, "identity")
    cred = _get(data, "credentials", dict, path, "")
    psk = _get(cred, "psk", str, path, "credentials", required=False)
    psk_file = _file(_get(cred, "psk_file", str, path, "credentials", required=False), path, "credentials.psk_file")
    if psk is not None and psk_file is not None:
        raise ConfigError(f"{path}: credentials: psk and psk_file are exclusive")
    secret = psk.encode() if psk is not None else (psk_file.read_bytes().strip() if psk_file else None)
    certificate = _file(_get(cred, "certificate", str, path, "credentials", required=False), path, "credentials.certificate")
    key = _file(_get(cred, "key", str, path, "credentials", required=False), path, "credentials.key")
    ca = _file(_get(cred, "ca", str, path, "credentials", required=False), path, "credentials.ca")
    if secret is None and certificate is None and ca is None:
        raise ConfigError(f"{path}: credentials: needs psk, psk_file, or certificate/ca")
    if secret is not None and len(secret) == 0:
        raise ConfigError(f"{path}: credentials.psk: empty")
    props = _get(data, "proposals", dict, path, "")
    proposals: dict[str, tuple[str, ...]] = {}
    for kind, value in props.items():
        if kind not in ("ike", "esp", "ah"):
            raise ConfigError(f"{path}: proposals.{kind}: unknown kind (ike, esp, ah)")
        if not isinstance(value, list) or not all(isinstance(x, str) and x for x in value):
            raise ConfigError(f"{path}: proposals.{kind}: expected a list of proposal strings")
        proposals[kind] = tuple(value)
    if not proposals.get("ike"):
        raise ConfigError(f"{path}: proposals.ike: missing")
    return Profile(path, name, version, kernel, ipv4, ipv6, local_id, remote_id,
                   Credentials(secret, certificate, key, ca), proposals)


class ExternalNode(Node):
    """A device on the lab wire that the harness neither starts nor configures."""

    runtime = "external"

    def __init__(self, profile: Profile, spec: NodeSpec) -> None:
        self.profile = profile
        self.name, self.image, self.version, self.kernel, self.role = profile.name, profile.name, profile.version, profile.kernel, spec.role

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
        """Nothing to stop: the harness did not start the device."""


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
