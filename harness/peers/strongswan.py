"""strongSwan adapter: charon (/usr/lib/ipsec/charon) in the node, driven through vici (the PyPI `vici` package).

The node's strongswan.conf is rendered from peers/strongswan/templates/strongswan.conf: the vici
plugin listens on the node's management address (tcp://ADDR:4502), charon logs to a file
(ike/knl/cfg/chd 2, enc 1) and, where the package ships it, the save-keys plugin writes
Wireshark key tables. A Connection becomes a load-conn message (strongSwan's native form, the
same tree swanctl.conf describes; `swanctl_conf()` prints it as swanctl.conf for reports).
"""
from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import vici
import vici.exception

from harness.errors import ConfigError, LabError, NotEstablished
from harness.peers.algorithms import Algorithms, strongswan_algorithms
from harness.peers.base import ChildSaRecord, IkeSaRecord, NodeBase, child_serial, join_kernel
from harness.ike.ts import protocol_port, protoport_suffix
from harness.peers.connection import Connection, Identity, pem_certificates, selector_network, selector_protoport
from harness.esp.keepalive import LAB_INTERVAL
from harness.peers.templates import render

CHARON = "/usr/lib/ipsec/charon"
CONF_PATH = "/etc/strongswan.conf"
# the lines vici logs for every request (list-sas polling floods the log with them): left out of logs()
VICI_CHATTER = re.compile(r"\[CFG\] vici client \d+ (requests|registered for|unregistered for|connected|disconnected)")
LOG_PATH = "/var/log/charon.log"
STDOUT_PATH = "/var/log/charon.stdout"
KEYS_DIR = "/var/lib/ipsec-interop/keys"
SAVE_KEYS_PLUGIN = "/usr/lib/ipsec/plugins/libstrongswan-save-keys.so"
VICI_PORT = 4502
_ID_PREFIX = {"ipv4": "", "ipv6": "", "fqdn": "fqdn:", "email": "email:", "dn": "", "keyid": "keyid:#"}


def strongswan_conf(vici_socket: str, save_keys: bool = False, install_routes: bool = True,
                    retransmit_tries: int = 3, retransmit_timeout: float = 2.0) -> str:
    """The node's strongswan.conf from the template (vici socket URI, e.g. tcp://198.19.0.10:4502)."""
    if not (vici_socket.startswith("tcp://") or vici_socket.startswith("unix://")):
        raise ConfigError(f"vici socket {vici_socket!r}: must be a tcp:// or unix:// URI")
    return render("strongswan", "strongswan.conf", {
        "vici_socket": vici_socket, "save_keys_load": "yes" if save_keys else "no", "keys_dir": KEYS_DIR,
        "install_routes": "yes" if install_routes else "no", "retransmit_tries": retransmit_tries,
        "retransmit_timeout": retransmit_timeout, "log_path": LOG_PATH,
        "keep_alive": f"{LAB_INTERVAL}s"})


def identity(ident: Identity | None, addr: str) -> str:
    """A strongSwan identity string (typed prefix where the value alone would be ambiguous)."""
    if ident is None:
        return addr
    return _ID_PREFIX[ident.type] + ident.value


def _seconds(v: int | None) -> str | None:
    return None if v is None else f"{v}s"


def _put(d: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        d[key] = value


def conn_message(c: Connection, daemon_major: int = 5) -> dict[str, Any]:
    """The load-conn message for c (vici's form of a swanctl.conf connection); daemon_major picks 5.x or 6.x keywords."""
    lt = c.lifetimes
    child: dict[str, Any] = {"mode": c.mode, f"{c.protocol}_proposals": list(c.child_proposals),
                             "local_ts": [_ts(t) for t in c.local_selectors()], "remote_ts": [_ts(t) for t in c.remote_selectors()]}
    if c.rekey:
        _put(child, "rekey_time", _seconds(lt.child_rekey_time))
        _put(child, "rand_time", _seconds(lt.child_rand_time))  # default: life_time - rekey_time
        _put(child, "rekey_bytes", lt.child_rekey_bytes)
        _put(child, "rekey_packets", lt.child_rekey_packets)
    else:
        child.update(rekey_time="0", rekey_bytes=0, rekey_packets=0)
    _put(child, "life_time", _seconds(lt.child_life_time))
    _put(child, "life_bytes", lt.child_life_bytes)
    _put(child, "life_packets", lt.child_life_packets)
    if c.replay_window is not None:
        child["replay_window"] = c.replay_window
    restart = "start" if daemon_major >= 6 else "restart"
    child["dpd_action"] = {"none": "none", "clear": "clear", "trap": "trap", "restart": restart}[c.dpd.action]
    child["start_action"] = {"initiator": "start", "responder": "none", "trap": "trap"}[c.role]
    auth = signature_constraint(c.auth.signature) if c.auth.method == "pubkey" else c.auth.method
    local: dict[str, Any] = {"auth": auth, "id": identity(c.local_id, c.local_addr)}
    remote: dict[str, Any] = {"auth": auth, "id": identity(c.remote_id, c.remote_addr)}
    if c.auth.method == "pubkey":
        local["certs"] = [c.auth.cert_pem]
        remote["cacerts"] = [c.auth.ca_pem]
    conn: dict[str, Any] = {
        "version": "2", "local_addrs": [c.local_addr], "remote_addrs": [c.remote_addr],
        "proposals": list(c.ike_proposals), "encap": "yes" if c.encap == "force" else "no",
        "fragmentation": c.fragmentation, "mobike": "no", "local": local, "remote": remote,
        "children": {c.child: child}}
    if c.rekey:
        _put(conn, "rekey_time", _seconds(lt.ike_rekey_time))
        _put(conn, "reauth_time", _seconds(lt.ike_reauth_time))
    else:
        conn.update(rekey_time="0", reauth_time="0")
    if c.dpd.delay:
        conn["dpd_delay"] = f"{c.dpd.delay}s"
    if c.childless != "allow":  # charon's default is allow (5.9.8 and 6.0.1 both take allow|never|force)
        conn["childless"] = c.childless
    return {c.name: conn}


def _ts(text: str) -> str:
    """A selector as swanctl's local_ts/remote_ts take it, the protocol as a number: charon 5.9 looks names up in
    /etc/protocols, which the Debian bookworm image does not have (measured: 'invalid value for: local_ts')."""
    suffix = selector_protoport(text)
    if not suffix:
        return text
    proto, (lo, hi) = protocol_port(suffix, text)
    return f"{selector_network(text)}{protoport_suffix(proto, lo, hi)}"


def signature_constraint(scheme: str | None) -> str:
    """swanctl's auth= for a signature scheme: an IKEv2 signature constraint ("ike:" prefix, swanctl.conf(5)), which
    charon signs with and requires of the remote end, leaving the certificates' own signatures unconstrained. legacy is
    plain pubkey: charon signs by the RFC 7296/4754 methods when the other end announced no SIGNATURE_HASH_ALGORITHMS."""
    if scheme is None or scheme == "legacy":
        return "pubkey"
    family, _, digest = scheme.partition("-")
    return "ike:" + {"pkcs1": f"rsa-{digest}", "pss": f"rsa/pss-{digest}", "ecdsa": f"ecdsa-{digest}"}.get(family, scheme)


def shared_message(c: Connection) -> dict[str, Any] | None:
    """The load-shared message of c's PSK (owners: both identities), None for certificate authentication."""
    if c.auth.method != "psk":
        return None
    return {"id": f"ipsi-{c.name}", "type": "IKE", "data": c.auth.psk,
            "owners": [identity(c.local_id, c.local_addr), identity(c.remote_id, c.remote_addr)]}


def swanctl_conf(message: Mapping[str, Any], indent: int = 0) -> str:
    """A load-conn message printed as swanctl.conf `connections { ... }` text (for reports and reproduction)."""
    pad = "    " * indent
    lines = [] if indent else ["connections {"]
    inner = pad + ("    " if not indent else "")
    for k, v in message.items():
        if isinstance(v, Mapping):
            lines += [f"{inner}{k} {{", swanctl_conf(v, indent + (2 if not indent else 1)), f"{inner}}}"]
        elif isinstance(v, (list, tuple)):
            if any("\n" in str(x) for x in v):
                lines.append(f"{inner}# {k}: {len(v)} PEM object(s), loaded through vici")
            else:
                lines.append(f"{inner}{k} = {','.join(str(x) for x in v)}")
        else:
            lines.append(f"{inner}{k} = {v}")
    if not indent:
        lines.append("}")
    return "\n".join(line for line in lines if line)


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _i(v: Any, default: int = 0) -> int:
    return int(_s(v)) if v is not None else default


def _alg(d: Mapping[str, Any], name: str) -> str | None:
    if name not in d:
        return None
    alg = _s(d[name])
    if name == "encr-alg" and "encr-keysize" in d:
        alg += f"_{_s(d['encr-keysize'])}"
    return alg


def parse_list_sas(events: Iterable[Mapping[str, Any]]) -> list[IkeSaRecord]:
    """IKE SA records from vici list-sas events ({name: {...}} each, values as bytes, as charon sends them)."""
    out = []
    for event in events:
        for name, sa in event.items():
            try:
                rec = IkeSaRecord(
                    name=_s(name), state=_s(sa["state"]), local_addr=_s(sa["local-host"]), remote_addr=_s(sa["remote-host"]),
                    spi_i=int(_s(sa["initiator-spi"]), 16), spi_r=int(_s(sa["responder-spi"]), 16),
                    initiator=_s(sa.get("initiator", "no")) == "yes", local_id=_s(sa.get("local-id", "")),
                    remote_id=_s(sa.get("remote-id", "")), encr=_alg(sa, "encr-alg"), integ=_alg(sa, "integ-alg"),
                    prf=_alg(sa, "prf-alg"), ke=_alg(sa, "dh-group"), serial=_i(sa.get("uniqueid")),
                    raw={k: _s(v) for k, v in sa.items() if not isinstance(v, Mapping)})
                for child in sa.get("child-sas", {}).values():
                    rec.children.append(ChildSaRecord(
                        name=_s(child["name"]), protocol=_s(child["protocol"]), mode=_s(child["mode"]).lower(),
                        spi_in=int(_s(child["spi-in"]), 16), spi_out=int(_s(child["spi-out"]), 16), state=_s(child["state"]),
                        encr=_alg(child, "encr-alg"), integ=_alg(child, "integ-alg"), ke=_alg(child, "dh-group"),
                        encap=_s(child.get("encap", "no")) == "yes",
                        bytes_in=_i(child.get("bytes-in")), bytes_out=_i(child.get("bytes-out")),
                        packets_in=_i(child.get("packets-in")), packets_out=_i(child.get("packets-out")),
                        local_ts=[_s(t) for t in child.get("local-ts", [])], remote_ts=[_s(t) for t in child.get("remote-ts", [])],
                        serial=_i(child.get("uniqueid")) or None,
                        raw={"bytes_from_peer": True, "packets_from_peer": True,
                             **{k: _s(v) for k, v in child.items() if not isinstance(v, (Mapping, list))}}))
            except (KeyError, ValueError) as e:
                raise LabError(f"strongSwan list-sas: IKE SA {_s(name)!r}: unexpected form ({e!r})") from None
            out.append(rec)
    return out


Connect = Callable[[], socket.socket]


class ViciSocket:
    """vici's TCP socket: it ACKs at once what it reads (TCP_QUICKACK before each recv), no read waits longer than
    `bound` seconds, and after a read or write that failed or was interrupted (Ctrl-C, SIGTERM) every further call
    raises that error again: the stream is out of step, so the unregister vici's `finally` sends would otherwise
    wait forever (seen: a SIGTERMed run hung in it). Without QUICKACK every vici round trip waited for our delayed
    ACK: 44 ms for `version`, 132 ms for list-sas; with it 1-2 ms (measured, strongSwan 6.0.1 under UML)."""

    def __init__(self, sock: socket.socket, bound: float = 90.0) -> None:
        self._sock, self._bound = sock, bound
        self._broken: BaseException | None = None
        sock.settimeout(bound)

    def recv(self, n: int) -> bytes:
        """Up to n bytes, acknowledged at once (Linux resets QUICKACK by itself, so it is set each time)."""
        return self._io(lambda: (self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1),
                                 self._sock.recv(n))[1])

    def sendall(self, data: bytes) -> None:
        """Send all of data."""
        self._io(lambda: self._sock.sendall(data))

    def settimeout(self, timeout: float | None) -> None:
        """Set the read timeout; None (vici's "block") means the bound."""
        self._sock.settimeout(self._bound if timeout is None else min(timeout, self._bound))

    def _io(self, fn: Callable[[], Any]) -> Any:
        if self._broken is not None:
            raise type(self._broken)(*self._broken.args)
        try:
            return fn()
        except BaseException as e:
            self._broken = e
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class StrongswanAdapter(NodeBase):
    """charon in a runtime node, controlled through vici over `connect()` (a TCP socket into the lab)."""

    implementation = "strongswan"

    def __init__(self, node: object, vici_socket: str, connect: Connect, start_timeout: float = 60.0) -> None:
        super().__init__(node)
        self.vici_socket = vici_socket
        self.connect = connect
        self.start_timeout = start_timeout
        self._session: vici.Session | None = None
        self._daemon_version = ""
        self._algorithms: Algorithms | None = None
        self.save_keys = False

    # -- daemon ------------------------------------------------------------------------------
    def start(self) -> None:
        """Write strongswan.conf, start charon (by its path, as the node's daemon) and wait for vici."""
        if self.pid is not None:
            return
        t0 = time.monotonic()
        self.save_keys = self.node.exec(["test", "-e", SAVE_KEYS_PLUGIN], timeout=10)[0] == 0  # type: ignore[attr-defined]
        self.node.put_file(CONF_PATH, strongswan_conf(self.vici_socket, self.save_keys).encode())  # type: ignore[attr-defined]
        self.run(["mkdir", "-p", KEYS_DIR, "/var/log"])
        self.pid = int(self.node.spawn([CHARON], STDOUT_PATH))  # type: ignore[attr-defined]
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                info = self.session().version()
                break
            except (OSError, vici.exception.SessionException):
                self._session = None
                if time.monotonic() > deadline:
                    raise LabError(f"strongSwan on {getattr(self.node, 'name', '?')}: vici at {self.vici_socket} not "
                                   f"answering after {self.start_timeout} s; log tail:\n{self.logs()[-2000:]}") from None
                time.sleep(0.1)
        self._daemon_version = _s(info.get("version", ""))
        self.timings["start"] = time.monotonic() - t0

    def session(self) -> vici.Session:
        """The vici session (charon started and connected on first use)."""
        if self.pid is None:
            self.start()
        if self._session is None:
            self._session = vici.Session(ViciSocket(self.connect()))
        return self._session

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except vici.exception.CommandException as e:
            raise LabError(f"strongSwan {what}: {e}; log tail:\n{self.logs()[-1500:]}") from None
        except (OSError, vici.exception.SessionException) as e:
            self._session = None
            raise LabError(f"strongSwan {what}: vici connection failed: {e}") from None

    def version(self) -> str:
        """'strongSwan <version>' as charon reports it over vici."""
        if not self._daemon_version:
            self._daemon_version = _s(self._call("version", lambda: self.session().version())["version"])
        return f"strongSwan {self._daemon_version}"

    def algorithms(self) -> Algorithms:
        """charon's algorithms from vici's get-algorithms, the list `swanctl --list-algs` prints (read once per daemon)."""
        if self._algorithms is None:
            raw = self._call("get-algorithms", lambda: self.session().get_algorithms())
            self._algorithms = strongswan_algorithms({_s(k): [_s(n) for n in v] for k, v in raw.items()})
        return self._algorithms

    def daemon_major(self) -> int:
        """charon's major version (5 or 6): some keywords differ."""
        v = self.version().split()[-1]
        return int(v.split(".")[0]) if v[:1].isdigit() else 5

    def logs(self) -> str:
        """charon's log file (its stdout/stderr appended when it wrote any), without vici's per-request lines."""
        return "".join(line for line in self.read_logs(LOG_PATH, STDOUT_PATH).splitlines(keepends=True)
                       if not VICI_CHATTER.search(line))

    def stop(self) -> None:
        """Stop charon by its pid (SIGTERM) and close the vici session."""
        if self._session is not None:
            try:
                self._session.transport.socket.close()
            except OSError:
                pass
            self._session = None
        super().stop()

    # -- configuration and control -------------------------------------------------------------
    def load(self, connection: Connection) -> None:
        """load-key/load-cert/load-shared then load-conn for one connection."""
        self.start()
        t0 = time.monotonic()
        c = connection
        s = self.session()
        if c.auth.method == "psk":
            msg = shared_message(c)
            self._call("load-shared", lambda: s.load_shared(msg))
        else:
            self._call("load-key", lambda: s.load_key({"type": "any", "data": c.auth.key_pem}))
            self._call("load-cert", lambda: s.load_cert({"type": "X509", "flag": "CA", "data": c.auth.ca_pem}))
            for pem in pem_certificates(c.auth.chain_pem or ""):  # as swanctl's x509ca: charon sends them with ours
                self._call("load-cert", lambda pem=pem: s.load_cert({"type": "X509", "flag": "CA", "data": pem}))
        message = conn_message(c, self.daemon_major())
        self._call("load-conn", lambda: s.load_conn(message))
        self.connections[c.name] = c
        self.timings["load"] = time.monotonic() - t0

    def unload(self, name: str) -> None:
        """unload-conn, then terminate (force) any IKE SA of that name charon still holds. A half-open one outlives
        unload-conn, retransmitting its IKE_SA_INIT, and charon joins a later initiate of a same-named connection to it:
        seen in ike/test_retransmission, where the IKE_SA_INIT row leaves one unanswered on purpose and the next
        row's CREATE_CHILD_SA was queued on it ('delaying task initiation, IKE_SA_INIT exchange in progress'), sent
        nothing new and failed when it gave up. LabError if one is still there after 5 s."""
        self._call("unload-conn", lambda: self.session().unload_conn({"name": name}))
        self.connections.pop(name, None)
        deadline = time.monotonic() + 5.0
        while self._call("list-sas", lambda: list(self.session().list_sas({"ike": name}))):
            if time.monotonic() >= deadline:
                raise LabError(f"strongSwan: an IKE SA {name!r} outlived unload-conn and a forced terminate (5 s); "
                               f"log tail:\n{self.logs()[-1500:]}")
            try:
                self._call("terminate", lambda: list(self.session().terminate({"ike": name, "force": "yes"})))
            except LabError as e:
                if "no matching" not in str(e):  # gone between the listing and the terminate
                    raise
            time.sleep(0.1)

    def initiate(self, name: str, timeout: float = 30.0, child: str | None = None) -> IkeSaRecord:
        """initiate the connection's Child SA (and IKE SA); the resulting IKE SA record."""
        return self._initiate(name, timeout, child or self._child(name))

    def initiate_ike(self, name: str, timeout: float = 30.0) -> IkeSaRecord:
        """vici initiate with an IKE SA and no child: charon initiates it childless (RFC 6023) if the responder
        announced support, and fails otherwise; the established IKE SA's record."""
        return self._initiate(name, timeout, None)

    def _initiate(self, name: str, timeout: float, child: str | None) -> IkeSaRecord:
        """vici initiate of the IKE SA name with child (None: none); NotEstablished with the responder's notify."""
        t0 = time.monotonic()
        msg = {"ike": name, "timeout": int(timeout * 1000), "init-limits": "no"}
        if child is not None:
            msg["child"] = child
        try:
            self._call("initiate", lambda: list(self.session().initiate(msg)))
        except LabError as e:
            if "vici connection failed" in str(e):
                raise
            notify = refusal_in_log(self.logs(), name)  # charon answered: the negotiation failed
            raise NotEstablished(str(e) if notify is None else f"{e}\n(the responder refused with {notify})",
                                 notify=notify) from None
        self.timings["initiate"] = time.monotonic() - t0
        for sa in self.list_sas():
            if sa.name == name and sa.established:
                return sa
        raise NotEstablished(f"strongSwan initiate {name}{'' if child else ' (IKE SA only)'}: no established IKE SA "
                             f"afterwards; log tail:\n{self.logs()[-1500:]}")

    def create_child(self, name: str, timeout: float = 30.0) -> None:
        """vici initiate of the connection's child: charon reuses the established IKE SA (CREATE_CHILD_SA)."""
        self.initiate(name, timeout)

    def _child(self, name: str) -> str:
        """The Child SA name of a loaded connection (its own name unless child_name says otherwise)."""
        c = self.connections.get(name)
        return c.child if c is not None else name

    def terminate(self, name: str, timeout: float = 30.0) -> None:
        """terminate the connection's IKE SA (and its Child SAs)."""
        msg = {"ike": name, "timeout": int(timeout * 1000)}
        self._call("terminate", lambda: list(self.session().terminate(msg)))

    def rekey(self, name: str, what: str = "child") -> None:
        """rekey the IKE SA ("ike", no reauthentication) or the Child SA ("child") of the connection."""
        if what not in ("ike", "child"):
            raise ConfigError(f"rekey: what must be 'ike' or 'child', not {what!r}")
        msg = {"ike": name} if what == "ike" else {"child": self._child(name)}
        reply = self._call("rekey", lambda: self.session().rekey(msg))
        if _i(reply.get("matches"), 1) == 0:
            raise LabError(f"strongSwan rekey {what} {name}: no SA matched")

    def delete_child(self, name: str, spi_in: int, timeout: float = 30.0) -> None:
        """terminate the one Child SA receiving on spi_in, by its unique id (child-id); the IKE SA stays."""
        serial = child_serial(self.list_sas(), name, spi_in, "strongSwan")
        self._call("terminate", lambda: list(self.session().terminate({"child-id": serial, "timeout": int(timeout * 1000)})))

    def drop_half_open(self, remote_addr: str) -> int:
        """Destroy the IKE SAs from remote_addr that never got past IKE_SA_INIT (force, no Delete); how many."""
        half = [s for s in parse_list_sas(self._call("list-sas", lambda: list(self.session().list_sas())))
                if s.state == "CONNECTING" and s.remote_addr == remote_addr and not s.initiator]
        for s in half:
            self._call("terminate", lambda: list(self.session().terminate({"ike-id": s.serial, "force": "yes", "timeout": -1})))
        return len(half)

    def list_sas(self) -> list[IkeSaRecord]:
        """list-sas with counters, joined with the kernel's keys by SPI."""
        events = self._call("list-sas", lambda: list(self.session().list_sas()))
        sas = parse_list_sas(events)
        states = self.xfrm_state()
        for sa in sas:
            join_kernel(sa.children, states)
        return sas

    def stats(self) -> dict[str, Any]:
        """charon's statistics (vici `stats`: uptime, workers, IKE SA counts, plugins)."""
        return _plain(self._call("stats", lambda: self.session().stats()))

    def counters(self) -> dict[str, Any]:
        """IKE message counters (vici get-counters, counters plugin) when charon has it loaded."""
        return _plain(self._call("get-counters", lambda: self.session().get_counters({"all": "yes"})))


_LOG_INITIATING = re.compile(r"<([^|>]+)\|(\d+)> initiating IKE_SA ")
_LOG_REFUSED = re.compile(r"<([^|>]+)\|(\d+)> received ([A-Z0-9_]+) notify(?: error|, no CHILD_SA built)")


def refusal_in_log(text: str, name: str) -> str | None:
    """The error notify the responder answered connection name's latest IKE SA with, as charon logs it ("received
    NO_PROPOSAL_CHOSEN notify error", "received TS_UNACCEPTABLE notify, no CHILD_SA built"), or None."""
    latest = [m.group(2) for m in _LOG_INITIATING.finditer(text) if m.group(1) == name]
    if not latest:
        return None
    return next((m.group(3) for m in _LOG_REFUSED.finditer(text) if (m.group(1), m.group(2)) == (name, latest[-1])), None)


def _plain(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {_s(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_plain(v) for v in x]
    return _s(x)
