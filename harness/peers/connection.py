"""The neutral connection description every peer adapter renders into its own native configuration.

A Connection is plain data: addresses, identities, authentication, proposals in strongSwan's
proposal syntax ("aes128gcm16-prfsha256-ecp256"), mode, protocol, traffic selectors, lifetimes,
rekeying, DPD, NAT-T, fragmentation, replay window and role. `connection_from_dict` builds one
from a dict (a JSON file's content) and raises ConfigError naming the offending key.
IKEv2 only: the harness tests IKEv2 (RFC 7296).
"""
from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any

from harness.datafile import load_json
from harness.errors import ConfigError, IpsecInteropError
from harness.ike.auth import SCHEMES
from harness.ike.config import CHILDLESS  # RFC 6023 policies: never | allow | force (strongSwan's words)
from harness.ike.proposals import Proposal, parse_proposal
from harness.ike.ts import protocol_port

ID_TYPES = ("ipv4", "ipv6", "fqdn", "email", "dn", "keyid")
MODES = ("transport", "tunnel")
PROTOCOLS = ("esp", "ah")
ROLES = ("initiator", "responder", "trap")
DPD_ACTIONS = ("none", "clear", "trap", "restart")
ENCAP = ("auto", "force")
FRAGMENTATION = ("yes", "no", "force", "accept")


@dataclass(frozen=True)
class Identity:
    """An IKE identity (RFC 7296 s3.5): its type and value (ipv4/ipv6 address, fqdn, email, keyid hex, or a dn
    written first RDN first as strongSwan and Libreswan write it: "CN=moon,O=Lab" is CN, then O in the DER)."""

    type: str
    value: str

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Auth:
    """How this end authenticates: a PSK shared by both ends, or its certificate and key plus the CA (PEM text)."""

    method: str = "psk"          # "psk" | "pubkey"
    psk: str | None = None
    cert_pem: str | None = None  # this end's certificate
    key_pem: str | None = None   # this end's private key (PKCS#8 or traditional PEM)
    ca_pem: str | None = None    # the CA that signed the remote end's certificate (the root of its chain)
    chain_pem: str | None = None  # this end's intermediate CA certificate(s), its issuer first: sent with it (RFC 7296 s3.6)
    signature: str | None = None  # pubkey: the one scheme this end signs with and accepts (harness.ike.auth.SCHEMES)


@dataclass(frozen=True)
class Lifetimes:
    """Rekey/reauth/expiry times in seconds and Child SA volume limits; None leaves the implementation's default."""

    ike_rekey_time: int | None = None
    ike_reauth_time: int | None = None
    child_rekey_time: int | None = None
    child_life_time: int | None = None
    child_rand_time: int | None = None  # the Child SA rekey comes at random up to this long before child_rekey_time
    child_rekey_bytes: int | None = None
    child_life_bytes: int | None = None
    child_rekey_packets: int | None = None
    child_life_packets: int | None = None


@dataclass(frozen=True)
class Dpd:
    """Dead peer detection (RFC 7296 s2.4 liveness checks): interval in seconds (0: off) and action on timeout."""

    delay: int = 0
    action: str = "clear"


@dataclass(frozen=True)
class Connection:
    """One IKEv2 connection with one Child SA, as both reference peers can express it."""

    name: str
    local_addr: str
    remote_addr: str
    auth: Auth
    local_id: Identity | None = None
    remote_id: Identity | None = None
    ike_proposals: tuple[str, ...] = ("aes128gcm16-prfsha256-ecp256",)
    child_proposals: tuple[str, ...] = ("aes128gcm16",)
    mode: str = "transport"
    protocol: str = "esp"
    local_ts: tuple[str, ...] = ()    # prefixes, each optionally [PROTOCOL] or [PROTOCOL/PORT]; empty: this end's address
    remote_ts: tuple[str, ...] = ()
    lifetimes: Lifetimes = field(default_factory=Lifetimes)
    rekey: bool = True
    dpd: Dpd = field(default_factory=Dpd)
    encap: str = "auto"               # "force": UDP encapsulation (RFC 3948) even without NAT
    fragmentation: str = "yes"        # IKEv2 fragmentation (RFC 7383)
    childless: str = "allow"          # RFC 6023: allow (announce, accept; initiate childless when asked) | never | force
    replay_window: int | None = None  # packets; 0 disables the check; None: default
    role: str = "responder"           # initiator (auto=start) | responder (auto=add) | trap (auto=route)
    child_name: str = ""              # default: the connection's name
    remote_behind_nat: str | None = None  # transport mode: the remote end's own address behind a NAT, which its TS names

    @cached_property
    def ike_offer(self) -> tuple[Proposal, ...]:
        """The IKE proposals, parsed once (numbered 1, 2, ... in order)."""
        return tuple(parse_proposal(p, "ike", i + 1) for i, p in enumerate(self.ike_proposals))

    @cached_property
    def child_offer(self) -> tuple[Proposal, ...]:
        """The Child SA proposals (ESP or AH), parsed once."""
        return tuple(parse_proposal(p, self.protocol, i + 1) for i, p in enumerate(self.child_proposals))

    @property
    def child(self) -> str:
        """The Child SA's name (strongSwan's child section; Libreswan has one name for both)."""
        return self.child_name or self.name

    def to_dict(self) -> dict[str, Any]:
        """The connection as plain JSON-able data (connection_from_dict's inverse)."""
        return _plain(asdict(self))

    def local_selectors(self) -> tuple[str, ...]:
        """The local traffic selectors, defaulting to the local address as a host prefix."""
        return self.local_ts or (_host_prefix(self.local_addr),)

    def remote_selectors(self) -> tuple[str, ...]:
        """The remote traffic selectors, defaulting to the remote address as a host prefix."""
        return self.remote_ts or (_host_prefix(self.remote_addr),)


def pem_certificates(text: str) -> list[str]:
    """Each PEM certificate block in text, in order (a chain file holds one or more)."""
    end = "-----END CERTIFICATE-----"
    return [b[b.index("-----BEGIN CERTIFICATE-----"):] + end + "\n" for b in text.split(end)
            if "-----BEGIN CERTIFICATE-----" in b]


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def selector_network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """The address prefix of a selector ("198.18.0.2/32" of "198.18.0.2/32[udp/40001]")."""
    return ipaddress.ip_network(text.partition("[")[0].strip())


def selector_protoport(text: str) -> str:
    """The protocol/port part of a selector ("udp/40001" of "198.18.0.2/32[udp/40001]"), "" when there is none."""
    return text.partition("[")[2].rstrip("]").strip()


def _host_prefix(addr: str) -> str:
    ip = ipaddress.ip_address(addr)
    return f"{ip}/{ip.max_prefixlen}"


def _where(src: str, key: str) -> str:
    return f"{src}: {key}" if src else key


def _check(ok: bool, src: str, key: str, why: str) -> None:
    if not ok:
        raise ConfigError(f"{_where(src, key)}: {why}")


def _typed(d: dict[str, Any], key: str, kind: type | tuple[type, ...], src: str, what: str, shown: str = "") -> Any:
    v = d[key]
    _check(isinstance(v, kind) and not (kind is int and isinstance(v, bool)), src, shown or key, f"must be {what}, not {v!r}")
    return v


def _sub(cls: type, d: Any, src: str, prefix: str) -> Any:
    _check(isinstance(d, dict), src, prefix, f"must be an object, not {d!r}")
    names = {f.name: f for f in fields(cls)}
    for k in d:
        _check(k in names, src, f"{prefix}.{k}", f"unknown key (known: {', '.join(names)})")
    out = {}
    for k in d:
        ftype = str(names[k].type)
        if d[k] is None:
            out[k] = None
        elif "int" in ftype:
            out[k] = _typed(d, k, int, src, "an integer", f"{prefix}.{k}")
            _check(out[k] >= 0, src, f"{prefix}.{k}", f"must be >= 0, not {out[k]}")
        else:
            out[k] = _typed(d, k, str, src, "a string", f"{prefix}.{k}")
    return cls(**out)


def _address(d: dict[str, Any], key: str, src: str) -> str:
    v = _typed(d, key, str, src, "an IP address")
    try:
        return str(ipaddress.ip_address(v))
    except ValueError:
        raise ConfigError(f"{_where(src, key)}: not an IP address: {v!r}") from None


def _identity(d: Any, key: str, src: str) -> Identity:
    if isinstance(d, str):  # shorthand: an address or an FQDN/email
        try:
            ip = ipaddress.ip_address(d)
            return Identity(f"ipv{ip.version}", str(ip))
        except ValueError:
            return Identity("email" if "@" in d else "fqdn", d)
    ident = _sub(Identity, d, src, key)
    _check(ident.type in ID_TYPES, src, f"{key}.type", f"must be one of {', '.join(ID_TYPES)}, not {ident.type!r}")
    _check(bool(ident.value), src, f"{key}.value", "must not be empty")
    if ident.type in ("ipv4", "ipv6"):
        try:
            ip = ipaddress.ip_address(ident.value)
        except ValueError:
            raise ConfigError(f"{_where(src, key + '.value')}: not an IP address: {ident.value!r}") from None
        _check(ident.type == f"ipv{ip.version}", src, f"{key}.type", f"{ident.type} does not match {ident.value}")
    return ident


def _proposals(d: dict[str, Any], key: str, src: str) -> tuple[str, ...]:
    v = d[key]
    items = [v] if isinstance(v, str) else v
    _check(isinstance(items, list) and bool(items) and all(isinstance(p, str) and p.strip() for p in items), src, key,
           f"must be a proposal string or a non-empty list of them, not {v!r}")
    return tuple(p.strip().lower() for p in items)


def _parsed(c: Connection, src: str) -> Connection:
    """c with its proposals parsed (the one parse, kept as c's offers); ConfigError naming the key and index."""
    for key, offer, protocol in (("ike_proposals", "ike_offer", "ike"), ("child_proposals", "child_offer", c.protocol)):
        parsed = []
        for i, text in enumerate(getattr(c, key)):
            try:
                parsed.append(parse_proposal(text, protocol, i + 1))
            except IpsecInteropError as e:
                raise ConfigError(f"{_where(src, f'{key}[{i}]')}: {e}") from None
        c.__dict__[offer] = tuple(parsed)  # the cached_property's slot: never parsed again
    return c


def _selectors(d: dict[str, Any], key: str, src: str) -> tuple[str, ...]:
    v = d[key]
    items = [v] if isinstance(v, str) else v
    _check(isinstance(items, list) and all(isinstance(t, str) for t in items), src, key,
           f"must be a list of subnets, each optionally with [PROTOCOL] or [PROTOCOL/PORT], not {v!r}")
    out = []
    for i, t in enumerate(items):
        try:
            net, suffix = str(ipaddress.ip_network(t.partition("[")[0].strip(), strict=True)), selector_protoport(t)
            if suffix:
                protocol_port(suffix, net)
            out.append(f"{net}[{suffix}]" if suffix else net)
        except (ValueError, ConfigError) as e:
            raise ConfigError(f"{_where(src, f'{key}[{i}]')}: {e}") from None
    return tuple(out)


def _choice(d: dict[str, Any], key: str, choices: tuple[str, ...], src: str) -> str:
    v = _typed(d, key, str, src, "a string")
    _check(v in choices, src, key, f"must be one of {', '.join(choices)}, not {v!r}")
    return v


def connection_from_dict(d: Any, src: str = "") -> Connection:
    """A Connection from plain data; ConfigError naming the key (and src, e.g. the file) when something is wrong."""
    _check(isinstance(d, dict), src, "connection", f"must be an object, not {type(d).__name__}")
    known = {f.name for f in fields(Connection)}
    for k in d:
        _check(k in known, src, k, f"unknown key (known: {', '.join(sorted(known))})")
    for k in ("name", "local_addr", "remote_addr", "auth"):
        _check(k in d, src, k, "missing")
    kw: dict[str, Any] = {"name": _typed(d, "name", str, src, "a string")}
    _check(bool(kw["name"]) and all(c.isalnum() or c in "-_" for c in kw["name"]), src, "name",
           f"must be letters, digits, '-' or '_', not {kw['name']!r}")
    kw["local_addr"], kw["remote_addr"] = _address(d, "local_addr", src), _address(d, "remote_addr", src)
    _check(ipaddress.ip_address(kw["local_addr"]).version == ipaddress.ip_address(kw["remote_addr"]).version,
           src, "remote_addr", "must be of the same IP version as local_addr")
    auth = _sub(Auth, d["auth"], src, "auth")
    _check(auth.method in ("psk", "pubkey"), src, "auth.method", f"must be psk or pubkey, not {auth.method!r}")
    if auth.method == "psk":
        _check(bool(auth.psk), src, "auth.psk", "missing (auth.method is psk)")
    else:
        for k in ("cert_pem", "key_pem", "ca_pem"):
            v = getattr(auth, k)
            _check(bool(v) and "-----BEGIN " in v, src, f"auth.{k}", "missing or not PEM (auth.method is pubkey)")
        if auth.chain_pem is not None:
            _check(len(pem_certificates(auth.chain_pem)) > 0, src, "auth.chain_pem",
                   "must be one or more PEM certificates (BEGIN CERTIFICATE)")
    _check(auth.method == "pubkey" or auth.chain_pem is None, src, "auth.chain_pem", "only with auth.method pubkey")
    _check(auth.signature is None or auth.signature in SCHEMES, src, "auth.signature",
           f"must be one of {', '.join(SCHEMES)}, not {auth.signature!r}")
    _check(auth.signature is None or auth.method == "pubkey", src, "auth.signature", "only with auth.method pubkey")
    kw["auth"] = auth
    for k in ("local_id", "remote_id"):
        if d.get(k) is not None:
            kw[k] = _identity(d[k], k, src)
    protocol = _choice(d, "protocol", PROTOCOLS, src) if "protocol" in d else "esp"
    kw["protocol"] = protocol
    if "ike_proposals" in d:
        kw["ike_proposals"] = _proposals(d, "ike_proposals", src)
    if "child_proposals" in d:
        kw["child_proposals"] = _proposals(d, "child_proposals", src)
    elif protocol == "ah":
        kw["child_proposals"] = ("sha256",)
    for k, choices in (("mode", MODES), ("encap", ENCAP), ("fragmentation", FRAGMENTATION), ("role", ROLES),
                       ("childless", CHILDLESS)):
        if k in d:
            kw[k] = _choice(d, k, choices, src)
    for k in ("local_ts", "remote_ts"):
        if k in d:
            kw[k] = _selectors(d, k, src)
            versions = {selector_network(t).version for t in kw[k]}
            _check(versions <= {ipaddress.ip_address(kw["local_addr"]).version} or kw.get("mode", "transport") == "tunnel",
                   src, k, "transport mode selectors must match the address family")
    if "lifetimes" in d:
        kw["lifetimes"] = _sub(Lifetimes, d["lifetimes"], src, "lifetimes")
    if "rekey" in d:
        kw["rekey"] = _typed(d, "rekey", bool, src, "true or false")
    if "dpd" in d:
        kw["dpd"] = _sub(Dpd, d["dpd"], src, "dpd")
        _check(kw["dpd"].action in DPD_ACTIONS, src, "dpd.action", f"must be one of {', '.join(DPD_ACTIONS)}")
    if d.get("replay_window") is not None:
        kw["replay_window"] = _typed(d, "replay_window", int, src, "an integer")
        _check(0 <= kw["replay_window"] <= 4096, src, "replay_window", "must be 0..4096")
    if "child_name" in d:
        kw["child_name"] = _typed(d, "child_name", str, src, "a string")
    if d.get("remote_behind_nat") is not None:
        kw["remote_behind_nat"] = _address(d, "remote_behind_nat", src)
        _check(ipaddress.ip_address(kw["remote_behind_nat"]).version == ipaddress.ip_address(kw["local_addr"]).version,
               src, "remote_behind_nat", "must be of the same IP version as local_addr")
    if kw.get("mode", "transport") == "transport" and (kw.get("local_ts") or kw.get("remote_ts")):
        for k, addr in (("local_ts", kw["local_addr"]), ("remote_ts", kw["remote_addr"])):
            for t in kw.get(k, ()):
                _check(ipaddress.ip_address(addr) in selector_network(t), src, k,
                       f"transport mode: {t} must contain the address {addr}")
    return _parsed(Connection(**kw), src)


def load_connection(path: str | Path) -> Connection:
    """A Connection from a JSON file; ConfigError naming the file and key."""
    return connection_from_dict(load_json(path), str(path))


def mirrored(c: Connection, role: str = "responder", name: str | None = None) -> Connection:
    """The same connection as seen from the other end (addresses, IDs and selectors swapped), with `role`."""
    from dataclasses import replace

    return replace(c, name=name or c.name, local_addr=c.remote_addr, remote_addr=c.local_addr, local_id=c.remote_id,
                   remote_id=c.local_id, local_ts=c.remote_ts, remote_ts=c.local_ts, role=role, remote_behind_nat=None)
