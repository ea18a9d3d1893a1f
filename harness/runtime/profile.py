"""The profile of an external device (--runtime external --profile FILE): one TOML parse into one frozen dataclass.

The format, with every key, is in README.md ("Validating a device: the profile"). Every fault is a ConfigError
naming the file and the key (`address.ipv4`, `wire.netns`, ...); relative paths are relative to the profile file.
Nothing here touches the device or the network: harness.runtime.external reads the result.
"""
from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

from harness.errors import ConfigError

LAB_V4, LAB_V6 = "198.18.0.0/15", "2001:db8::/32"
MODES = ("transport", "tunnel")
INITIATORS = ("tester", "device")
WIRE_KINDS = ("netns", "interface")
ATTACH = ("macvlan", "move")
LIFETIMES = ("ike_rekey_time", "ike_reauth_time", "child_rekey_time", "child_life_time", "child_rekey_bytes",
             "child_life_bytes", "child_rekey_packets", "child_life_packets")
CONTROL_FORMATS = ("swanctl",)
MAX_OUTPUT = 1 << 16  # bytes of a control hook's output read at most (untrusted text)
IFNAME_MAX = 15


@dataclass(frozen=True)
class Credentials:
    """How the tester authenticates to the device: a PSK, or the tester's certificate and key plus the CA of the device's."""

    psk: bytes | None = None
    certificate: Path | None = None
    key: Path | None = None
    ca: Path | None = None


@dataclass(frozen=True)
class Features:
    """What the device is configured for: modes, NAT-T, ESN, fragmentation, replay window, lifetimes, initiators."""

    modes: tuple[str, ...] = ("transport",)
    natt: bool = False
    esn: bool = False
    fragmentation: bool = False
    replay_window: int | None = None
    lifetimes: Mapping[str, int] = field(default_factory=dict)
    initiators: tuple[str, ...] = ("tester",)
    local_ts: tuple[str, ...] = ()   # the device's tunnel selectors (its side); empty: its address
    remote_ts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Wire:
    """How the device reaches the lab: an existing namespace (a veth the lab makes) or a host interface."""

    kind: str                         # "netns" | "interface"
    netns: str | None = None          # netns: the namespace the device lives in
    ifname: str = "lab0"              # netns: the far end's name in that namespace
    bridge: str | None = None         # netns: enslave the far end to this bridge there (else the lab addresses it)
    interface: str | None = None      # interface: the host interface the user names
    attach: str = "macvlan"           # interface: macvlan on it, or the interface itself moved into the tester namespace


@dataclass(frozen=True)
class Control:
    """Optional hooks (argv, no shell) the user supplies to read or command the device; their output is untrusted."""

    list_sas: tuple[str, ...] = ()
    initiate: tuple[str, ...] = ()
    terminate: tuple[str, ...] = ()
    format: str = "swanctl"
    timeout: float = 30.0


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
    features: Features = field(default_factory=Features)
    wire: Wire | None = None
    control: Control = field(default_factory=Control)


class _Reader:
    """Typed access to one TOML table, every error naming the file and the dotted key."""

    def __init__(self, path: Path, data: Mapping[str, Any], where: str = "") -> None:
        self.path, self.data, self.where = path, data, where

    def key(self, k: str) -> str:
        return f"{self.where}.{k}" if self.where else k

    def error(self, k: str, why: str) -> ConfigError:
        return ConfigError(f"{self.path}: {self.key(k)}: {why}")

    def get(self, k: str, typ: type | tuple[type, ...], required: bool = False, default: Any = None) -> Any:
        if k not in self.data:
            if required:
                raise self.error(k, "missing")
            return default
        v = self.data[k]
        if not isinstance(v, typ) or (isinstance(v, bool) and typ in (int, float, (int, float))):
            name = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
            raise self.error(k, f"expected {name}, got {type(v).__name__}")
        return v

    def table(self, k: str, required: bool = False) -> _Reader:
        return _Reader(self.path, self.get(k, dict, required, {}), self.key(k))

    def strings(self, k: str, allowed: tuple[str, ...] | None = None, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        v = self.get(k, list, default=None)
        if v is None:
            return default
        if not all(isinstance(x, str) and x for x in v):
            raise self.error(k, "expected a list of non-empty strings")
        bad = [x for x in v if allowed is not None and x not in allowed]
        if bad:
            raise self.error(k, f"{bad[0]!r} is not one of {', '.join(allowed or ())}")
        return tuple(v)

    def choice(self, k: str, allowed: tuple[str, ...], default: str) -> str:
        v = self.get(k, str, default=default)
        if v not in allowed:
            raise self.error(k, f"{v!r} is not one of {', '.join(allowed)}")
        return str(v)

    def unknown(self, known: tuple[str, ...]) -> None:
        for k in self.data:
            if k not in known:
                raise self.error(k, f"unknown key (known: {', '.join(known)})")

    def file(self, k: str) -> Path | None:
        v = self.get(k, str)
        if v is None:
            return None
        p = (self.path.parent / v).resolve()
        if not p.is_file():
            raise self.error(k, f"no such file {p}")
        return p

    def address(self, k: str, version: int) -> str | None:
        v = self.get(k, str)
        if v is None:
            return None
        try:
            a = ip_address(v)
        except ValueError:
            raise self.error(k, f"{v!r} is not an IP address") from None
        block = LAB_V4 if version == 4 else LAB_V6
        if a.version != version or a not in ip_network(block):
            raise self.error(k, f"{v} is outside the lab's {block}")
        return str(a)

    def ifname(self, k: str, required: bool = False, default: str | None = None) -> str | None:
        v = self.get(k, str, required, default)
        if v is not None and (not 0 < len(v) <= IFNAME_MAX or any(c in v for c in "/ \t\n:")):
            raise self.error(k, f"{v!r} is not an interface name (1..{IFNAME_MAX} characters, no '/', ':' or blanks)")
        return v


def _credentials(r: _Reader) -> Credentials:
    r.unknown(("psk", "psk_file", "certificate", "key", "ca"))
    psk, psk_file = r.get("psk", str), r.file("psk_file")
    if psk is not None and psk_file is not None:
        raise r.error("psk", "psk and psk_file are exclusive")
    secret = psk.encode() if psk is not None else (psk_file.read_bytes().strip() if psk_file else None)
    if secret is not None and not secret:
        raise r.error("psk", "empty")
    cert, key, ca = r.file("certificate"), r.file("key"), r.file("ca")
    if secret is None and cert is None:
        raise ConfigError(f"{r.path}: credentials: needs psk, psk_file, or certificate, key and ca")
    if cert is not None and (key is None or ca is None):
        raise r.error("key" if key is None else "ca", "missing (a certificate needs its key and the device's CA)")
    return Credentials(secret, cert, key, ca)


def _proposals(r: _Reader) -> dict[str, tuple[str, ...]]:
    from harness.ike.proposals import parse_proposal

    r.unknown(("ike", "esp", "ah"))
    out = {}
    for kind in ("ike", "esp", "ah"):
        out[kind] = r.strings(kind)
        for i, text in enumerate(out[kind]):
            try:
                parse_proposal(text, kind)
            except ConfigError as e:
                raise r.error(f"{kind}[{i}]", str(e)) from None
    if not out["ike"]:
        raise r.error("ike", "missing")
    if not out["esp"] and not out["ah"]:
        raise r.error("esp", "missing (the device needs at least one ESP or AH proposal)")
    return out


def _features(r: _Reader) -> Features:
    r.unknown(("modes", "natt", "esn", "fragmentation", "replay_window", "lifetimes", "initiators", "local_ts",
               "remote_ts"))
    lt = r.table("lifetimes")
    lt.unknown(LIFETIMES)
    lifetimes = {k: lt.get(k, int) for k in LIFETIMES if k in lt.data}
    for k, v in lifetimes.items():
        if v < 0:
            raise lt.error(k, f"must be >= 0, not {v}")
    window = r.get("replay_window", int)
    if window is not None and window < 0:
        raise r.error("replay_window", f"must be >= 0, not {window}")
    modes = r.strings("modes", MODES, ("transport",))
    initiators = r.strings("initiators", INITIATORS, ("tester",))
    if not modes or not initiators:
        raise r.error("modes" if not modes else "initiators", "empty")
    ts = {}
    for k in ("local_ts", "remote_ts"):
        ts[k] = r.strings(k)
        for t in ts[k]:
            try:
                ip_network(t.partition("[")[0], strict=False)
            except ValueError:
                raise r.error(k, f"{t!r} is not a prefix") from None
    return Features(modes, r.get("natt", bool, default=False), r.get("esn", bool, default=False),
                    r.get("fragmentation", bool, default=False), window, lifetimes, initiators,
                    ts["local_ts"], ts["remote_ts"])


def _wire(r: _Reader) -> Wire | None:
    if not r.data:
        return None
    r.unknown(("kind", "netns", "ifname", "bridge", "interface", "attach"))
    kind = r.get("kind", str, required=True)
    if kind not in WIRE_KINDS:
        raise r.error("kind", f"{kind!r} is not one of {', '.join(WIRE_KINDS)}")
    if kind == "netns":
        for k in ("interface", "attach"):
            if k in r.data:
                raise r.error(k, "only for kind = \"interface\"")
        netns = r.get("netns", str, required=True)
        if not netns or "/" in netns or netns in (".", ".."):
            raise r.error("netns", f"{netns!r} is not a namespace name")
        return Wire("netns", netns=netns, ifname=str(r.ifname("ifname", default="lab0")), bridge=r.ifname("bridge"))
    for k in ("netns", "ifname", "bridge"):
        if k in r.data:
            raise r.error(k, "only for kind = \"netns\"")
    return Wire("interface", interface=r.ifname("interface", required=True), attach=r.choice("attach", ATTACH, "macvlan"))


def _control(r: _Reader) -> Control:
    r.unknown(("list_sas", "initiate", "terminate", "format", "timeout"))
    timeout = float(r.get("timeout", (int, float), default=30.0))
    if not 0 < timeout <= 600:
        raise r.error("timeout", f"must be in (0, 600] seconds, not {timeout}")
    return Control(r.strings("list_sas"), r.strings("initiate"), r.strings("terminate"),
                   r.choice("format", CONTROL_FORMATS, "swanctl"), timeout)


def load_profile(path: str | Path) -> Profile:
    """Parse and check a profile; ConfigError naming the file and the key on any fault."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not TOML: {e}") from None
    top = _Reader(path, data)
    top.unknown(("name", "version", "kernel", "address", "identity", "credentials", "proposals", "features", "wire",
                 "control"))
    addr = top.table("address", required=True)
    addr.unknown(("ipv4", "ipv6"))
    ipv4, ipv6 = addr.address("ipv4", 4), addr.address("ipv6", 6)
    if not ipv4 and not ipv6:
        raise ConfigError(f"{path}: address: needs ipv4 or ipv6")
    ident = top.table("identity", required=True)
    ident.unknown(("local", "remote"))
    features = _features(top.table("features"))
    proposals = _proposals(top.table("proposals", required=True))
    return Profile(
        path, top.get("name", str) or path.stem, top.get("version", str, required=True),
        top.get("kernel", str) or "unknown (external device)", ipv4, ipv6,
        ident.get("local", str, required=True), ident.get("remote", str, required=True),
        _credentials(top.table("credentials", required=True)), proposals, features,
        _wire(top.table("wire")), _control(top.table("control")))
