"""The built-in IKEv2/ESP/AH stack as an end like any other: the peer protocol over the tester's sockets.

`BuiltinEnd` implements harness.peers.base.PeerAdapter with harness.ike.endpoint.IkeEndpoint and the
ESP/AH code of harness.esp, so a case can put it on either side of an exchange. One thread owns the
endpoint and the tester's IKE and raw ESP/AH sockets (every public call is handed to it), answers ICMP
echo requests that arrive through a Child SA, and keeps a ledger of every SA's keys from the moment they
exist (half-made and deleted ones included), which the case writes beside its capture.

Its knobs for negative cases: `bugs` (harness.ike.config.Bugs), `faults` (harness.esp.Faults for the next
protected packets), `config_overrides` (any IkeConfig field, e.g. window_size, require_cookie), and the
timing of requests (`send_request` returns at once; `initiate(wait=False)`); `request(make)` sends what make(endpoint)
returns (e.g. `probe(..., message_id=)`, `resend_last`) and `read(look)` reads the endpoint, both in its loop.

The configuration comes from the case's Connection only (`ike_config`): one description of a connection.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import queue
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from harness.errors import ConfigError, LabError, NoAnswer, PacketDropped, Refused, UnsupportedFeature
from harness.esp import Faults, Receiver, SaDatabase, Sender, SecurityAssociation
from harness.esp.fragment import fragment
from harness.esp.ip import parse_ip
from harness.esp.keepalive import LAB_INTERVAL, KeepaliveTimer
from harness.esp.udpencap import KEEPALIVE
from harness.ike.certs import Credential, cert_identities, dn_der_in_order
from harness.ike.auth import Identity as IkeIdentity, scheme_hash
from harness.ike.config import Bugs, IkeConfig
from harness.ike.endpoint import IkeEndpoint
from harness.ike.events import ChildlessIkeSa, ChildSaDeleted, ChildSaEstablished, ExchangeFailed, IkeSaDeleted, IkeSaEstablished, PeerDead
from harness.ike.export import IkeSaKeys
from harness.ike.sa import IkeSa
from harness.ike.ts import TrafficSelector
from harness.keys import IpsecSaKeys, KeysFile
from harness.lab import raw6
from harness.lab.datagrams import with_checksum
from harness.lab.driver import SocketDriver
from harness.lab.ping import echo_packet, ipv4_packet, parse_echo
from harness.peers.algorithms import Algorithms, builtin_algorithms
from harness.peers.base import ChildSaRecord, IkeSaRecord
from harness.peers.connection import Connection, Identity, selector_network

NAME = "builtin"
VERSION = "ipsec-interop built-in IKEv2/ESP/AH stack"
IPPROTO = {"esp": 50, "ah": 51}
PACKET_OUTGOING = 4  # AF_PACKET pkttype of a frame this host sent
ETHERTYPE = {4: b"\x08\x00", 6: b"\x86\xdd"}  # gateway mode: the LAN's frames by IP version
BURST = 64  # IKE datagrams taken from one socket per loop turn: a socket's backlog is not left to overflow
LINK_MTU = 1500  # the lab links' MTU: a longer outer packet leaves in fragments (RFC 4303 s3.3.4)
T = TypeVar("T")


def ike_identity(ident: Identity | None, address: str) -> IkeIdentity:
    """The IKE identity of a Connection end (its address when none is given)."""
    if ident is None:
        return IkeIdentity.of(address)
    if ident.type == "keyid":
        return IkeIdentity(11, bytes.fromhex(ident.value))  # ID_KEY_ID
    if ident.type == "dn":
        return IkeIdentity(9, dn_der_in_order(ident.value))  # ID_DER_ASN1_DN, RDNs in the order written
    return IkeIdentity.of(ident.value)


def _credential(c: Connection) -> tuple[Credential, Any]:
    try:
        cert = x509.load_pem_x509_certificate((c.auth.cert_pem or "").encode())
        key = serialization.load_pem_private_key((c.auth.key_pem or "").encode(), password=None)
        ca = x509.load_pem_x509_certificate((c.auth.ca_pem or "").encode())
        chain = tuple(x509.load_pem_x509_certificates(c.auth.chain_pem.encode())) if c.auth.chain_pem else ()
    except ValueError as e:
        raise ConfigError(f"connection {c.name}: auth: not a PEM certificate/key: {e}") from None
    return Credential(key, cert, tuple(cert_identities(cert)), chain), ca


def ike_config(c: Connection, bugs: Bugs | None = None, **overrides: Any) -> IkeConfig:
    """The built-in endpoint's configuration for Connection c (c's parsed proposals, no second description)."""
    kw: dict[str, Any] = dict(
        local_id=ike_identity(c.local_id, c.local_addr),
        remote_id=ike_identity(c.remote_id, c.remote_addr) if c.remote_id else None,
        ike_proposals=list(c.ike_offer), child_proposals=list(c.child_offer), mode=c.mode,
        local_ts=[TrafficSelector.of(t) for t in c.local_selectors()],
        remote_ts=[TrafficSelector.of(t) for t in c.remote_selectors()],
        fragmentation=c.fragmentation != "no", childless=c.childless, bugs=bugs or Bugs())
    if c.encap == "force":  # UDP encapsulation without a NAT: a faked NAT_DETECTION_SOURCE_IP, as strongSwan does it
        kw["bugs"] = dataclasses.replace(kw["bugs"], fake_natd=True)
    if c.auth.method == "psk":
        kw["psk"] = (c.auth.psk or "").encode()
    else:
        kw["credential"], kw["trust_anchor"] = _credential(c)
    if c.auth.signature:  # RFC 7427 s4: the peer must sign with a hash we announced: we announce the one we sign with
        kw["signature"] = c.auth.signature
        if c.auth.signature == "legacy":
            kw["rfc7427"] = False
        else:
            kw["signature_hashes"] = (int(scheme_hash(c.auth.signature)),)
    known = {f.name for f in fields(IkeConfig)}
    for k in overrides:
        if k not in known:
            raise ConfigError(f"builtin end: config override {k!r} is not an IkeConfig field")
    kw.update(overrides)
    return IkeConfig(**kw)


@dataclass
class ChildData:
    """A Child SA's data plane at the built-in end: its sender, its receiver, and what came through."""

    sender: Sender
    receiver: Receiver
    echo_replies: list[tuple[int, int]] = field(default_factory=list)  # (identifier, sequence) received
    echo_requests: int = 0  # echo requests received (and answered) through this SA
    crafted_seqs: int = 0  # sequence numbers the crafted packets (send_crafted) took from the sender's counter
    ah_shapes: dict[tuple[int, int], int] = field(default_factory=dict)  # AH verified: (header octets, AH octets) -> n
    udp_in: list[bytes] = field(default_factory=list)  # UDP packets received through this SA, as delivered


class BuiltinEnd:
    """The built-in stack at the tester, driven through the peer protocol (see module doc)."""

    implementation = NAME

    def __init__(self, tester: Any, version: int = 4, clock: Callable[[], float] = time.monotonic) -> None:
        self.tester, self.ip_version, self.clock = tester, version, clock
        self.address = tester.address(version=version)
        self.bugs = Bugs()
        self.faults: Faults | None = None
        self.config_overrides: dict[str, Any] = {}
        self.connection: Connection | None = None
        self.endpoint: IkeEndpoint | None = None
        self.driver: SocketDriver | None = None
        self.events: list[Any] = []
        self.event_times: list[float] = []  # the clock at each event, index for index
        self.log: list[str] = []
        self.ike_keys: dict[bytes, IkeSaKeys] = {}      # ledger: every IKE SA's keys, by SPIi|SPIr
        self.ipsec_keys: dict[tuple[str, int, str], IpsecSaKeys] = {}  # ledger: every ESP/AH SA's keys
        self.crafted: list[bytes] = []  # outer ESP/AH packets sent by hand (send_crafted, faults): the wire check excuses them
        self.children: dict[int, ChildData] = {}        # live Child SAs by inbound SPI
        self.echo_log: list[tuple[int, int, int]] = []  # every echo reply received: (identifier, sequence, inbound SPI)
        self.sad = SaDatabase()
        self._calls: queue.Queue[tuple[Callable[[], Any], queue.Queue[tuple[bool, Any]]]] = queue.Queue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = clock()
        self._lan_sock: socket.socket | None = None  # gateway mode: the tester's interface to the host behind it
        self._lan_nets: tuple[Any, ...] = ()           # our selectors (the LAN behind us)
        self._remote_nets: tuple[Any, ...] = ()        # the remote selectors (traffic for the tunnel)
        self._macs: dict[str, bytes] = {}              # LAN hosts' MAC addresses, learned from their frames
        self.inner_hooks: list[Callable[[bytes], bytes | None]] = []  # inner packets that are no echo (_on_ipsec)
        self._frag_ident = 0                           # the Identification of the last IPv6 packet sent in fragments
        self.keepalive = KeepaliveTimer(LAB_INTERVAL, clock)  # NAT-keepalives from behind a NAT (RFC 3948 s2.3)
        self._ike_sent = 0                              # the driver's send count when keepalives last looked

    # -- the loop that owns the endpoint and the sockets ----------------------------------------------
    def start(self) -> None:
        """Start the loop thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="builtin-end", daemon=True)
            self._thread.start()

    def _call(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """Run fn in the loop thread and return its result (or raise what it raised)."""
        self.start()
        done: queue.Queue[tuple[bool, Any]] = queue.Queue(1)
        self._calls.put((fn, done))
        self._wake_w.send(b"x")
        try:
            ok, value = done.get(timeout=timeout)
        except queue.Empty:
            raise LabError(f"builtin end: its loop did not answer within {timeout} s") from None
        if not ok:
            raise value
        return value

    def _loop(self) -> None:
        raw = [self.tester.raw[(v, p)] for v in (4, 6) for p in IPPROTO.values()]
        while not self._stop.is_set():
            driver = self.driver
            ike = list(driver.sockets.values()) if driver else []
            due = self.endpoint.next_timer() if self.endpoint else None
            wait = 0.2 if due is None else max(0.0, min(0.2, due - self.clock()))
            lan = [self._lan_sock] if self._lan_sock is not None else []
            ready, _, _ = select.select([self._wake_r, *ike, *raw, *lan], [], [], wait)
            for s in ready:
                if s is self._wake_r:
                    self._wake_r.recv(4096)
                elif lan and s is lan[0]:
                    self._on_lan(*s.recvfrom(65535))
                elif s in raw:
                    self._on_ipsec(s.recv(65535) if s.family == socket.AF_INET else raw6.receive(s))
                elif driver:
                    port = next(p for p, x in driver.sockets.items() if x is s)
                    for _ in range(BURST):  # what has queued up, a burst at most (many IKE SAs at once: suites/load)
                        driver._receive(s, port)  # the driver's own handling: non-ESP marker, keepalives
                        if not select.select([s], [], [], 0)[0]:
                            break
            if driver and self.endpoint and (due := self.endpoint.next_timer()) is not None and self.clock() >= due:
                driver.send(self.endpoint.tick())
            if driver and self.endpoint:
                self._keepalives(driver)
            if driver:
                for data, _src in driver.esp_in:
                    self._on_ipsec(data, udp=True)
                driver.esp_in.clear()
            self._harvest()
            while not self._calls.empty():
                fn, done = self._calls.get_nowait()
                try:
                    done.put((True, fn()))
                except BaseException as e:  # noqa: BLE001 - handed to the calling thread, raised there
                    done.put((False, e))
                self._harvest()

    def _keepalives(self, driver: SocketDriver) -> None:
        """A NAT-keepalive to the remote of each IKE SA we are behind a NAT on, when due (RFC 3948 s2.3): IKE sent
        since the last look restarts every interval."""
        behind = [sa.remote for sa in self.endpoint.established() if sa.nat_local] if self.endpoint else []
        if driver.sent != self._ike_sent:
            self._ike_sent = driver.sent
            for remote in behind:
                self.keepalive.sent(remote)
        for remote in self.keepalive.due(behind):
            self.tester.udp[(self.ip_version, 4500)].sendto(KEEPALIVE, remote)

    def _harvest(self) -> None:
        """Take the endpoint's new events and snapshot every SA's keys into the ledger."""
        if not self.endpoint:
            return
        new = self.endpoint.drain_events()
        if self.driver:
            new = self.driver.events + new
            self.driver.events = []
        for e in new:
            self._on_event(e)
        for sa in self.endpoint.sas.values():  # once per loop turn: with many IKE SAs, only a new one is exported
            if sa.keys is not None and sa.suite is not None and (key := sa.spi_i + sa.spi_r) not in self.ike_keys:
                self.ike_keys[key] = sa.ike_keys

    def _on_event(self, e: Any) -> None:
        self.events.append(e)
        self.event_times.append(self.clock())
        self.log.append(f"{self.clock() - self._t0:8.3f} {type(e).__name__}: {_describe(e)}")
        if isinstance(e, ChildSaEstablished):
            for k in (e.inbound, e.outbound):
                self.ipsec_keys[(k.protocol, k.spi, k.dst)] = k
            encap = None
            if e.udp_encap and self.endpoint:
                sa = self._sa_of_child(e.inbound.spi)
                encap = (4500, sa.remote[1]) if sa else (4500, 4500)
            inbound = SecurityAssociation.from_keys(e.inbound, udp_encap=(encap[1], encap[0]) if encap else None)
            outbound = SecurityAssociation.from_keys(e.outbound, udp_encap=encap)
            window = self.connection.replay_window if self.connection and self.connection.replay_window is not None else 64
            self.children[e.inbound.spi] = ChildData(Sender(outbound), self.sad.add(inbound, window=window))
        elif isinstance(e, ChildSaDeleted):
            data = self.children.pop(e.spi_in, None)
            if data:
                self.sad.remove(data.receiver.sa)

    def _sa_of_child(self, spi_in: int) -> IkeSa | None:
        for sa in self.endpoint.sas.values() if self.endpoint else ():
            if spi_in.to_bytes(4, "big") in sa.children:
                return sa
        return None

    def _on_ipsec(self, outer: bytes, udp: bool = False) -> None:
        """An ESP/AH packet for us: unprotect it; answer an echo request through the same Child SA."""
        if udp:
            outer = _udp_wrap(outer, self)
            if outer is None:
                return
        try:
            opened = self.sad.unprotect(outer)
        except PacketDropped as e:
            self.log.append(f"{self.clock() - self._t0:8.3f} dropped: {e}")
            return
        data = self.children.get(opened.spi)
        if data is not None and data.receiver.sa.protocol == "ah":
            view = parse_ip(outer)
            shape = (view.offset, (outer[view.offset + 1] + 2) * 4)
            data.ah_shapes[shape] = data.ah_shapes.get(shape, 0) + 1
        if self._lan_sock is not None and opened.inner and self._to_lan(opened.inner):
            return
        echo = parse_echo(opened.inner) if opened.inner else None
        if data is not None and echo is None and opened.inner:  # a case's own traffic (harness.cases.flows)
            for hook in list(self.inner_hooks):
                if (reply := hook(opened.inner)) is not None:
                    self._send_ipsec(data, reply)
        if data is not None and opened.next_header == 17:  # transport mode: what a local UDP socket would get
            data.udp_in.append(opened.inner)
        if data is None or echo is None:
            return
        src, dst, kind, ident, seq, payload = echo
        if kind == 0:
            data.echo_replies.append((ident, seq))
            self.echo_log.append((ident, seq, opened.spi))
        elif kind == 8:
            data.echo_requests += 1
            self._send_ipsec(data, echo_packet(dst, src, ident, seq, payload, reply=True))

    def _send_ipsec(self, data: ChildData, inner: bytes) -> None:
        self._emit(data.sender.sa, data.sender.protect(inner, self.faults))  # faults: a buggy end, not excused

    def _craft(self, data: ChildData, make: Callable[[Sender], bytes]) -> bytes:
        """Send the outer packet make(sender) builds, recorded as crafted (its sequence numbers kept apart)."""
        before = data.sender.next_seq
        outer = make(data.sender)
        data.crafted_seqs += data.sender.next_seq - before
        self.crafted.append(outer)
        self._emit(data.sender.sa, outer)
        return outer

    def _emit(self, sa: SecurityAssociation, outer: bytes) -> None:
        """Put an outer ESP/AH packet on the wire (UDP 4500 when the SA is encapsulated)."""
        if sa.udp_encap:
            self.keepalive.sent((sa.dst, sa.udp_encap[1]))
            ihl = (outer[0] & 0x0F) * 4
            self.tester.udp[(self.ip_version, 4500)].sendto(outer[ihl + 8:], (sa.dst, sa.udp_encap[1]))
            return
        sock = self.tester.raw[(self.ip_version, IPPROTO[sa.protocol])]
        pieces = [outer]
        if len(outer) > LINK_MTU:  # fragments after ESP processing (RFC 4303 s3.3.4); IPv4 keeps its Identification
            self._frag_ident = self._frag_ident % 0xFFFFFFFF + 1
            pieces = fragment(outer, LINK_MTU, int.from_bytes(outer[4:6], "big") if self.ip_version == 4 else self._frag_ident)
        for piece in pieces:
            if self.ip_version == 6:
                raw6.send(sock, piece)
                continue
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
            sock.sendto(piece, (sa.dst, 0))

    # -- gateway mode: the built-in end as a tunnel gateway for the host behind the tester ----------------------
    def _gateway(self, c: Connection) -> None:
        """Take the tester's LAN interface when c is a tunnel whose local selectors are a subnet behind us."""
        self._lan_sock, self._lan_nets, self._remote_nets = None, (), ()
        nets = tuple(selector_network(t) for t in c.local_selectors())
        own = (self.tester.address(version=4), self.tester.address(version=6))  # a 4-in-6 tunnel's selectors: the other
        if c.mode != "tunnel" or any(ipaddress.ip_address(a) in n and n.num_addresses == 1 for a in own for n in nets):
            return
        for a in self.tester.addresses:  # the LAN's family is the selectors' (a 4-in-6 tunnel's hosts are IPv4)
            if any(lan != self.address and ipaddress.ip_address(lan) in n for lan in filter(None, (a.v4, a.v6)) for n in nets):
                self._lan_sock = self.tester.packet[a.ifname]
                self._lan_nets, self._remote_nets = nets, tuple(selector_network(t) for t in c.remote_selectors())
                return

    def _on_lan(self, frame: bytes, addr: Any) -> None:
        """A frame from the LAN: an IPv4 or IPv6 packet for the remote selectors goes into the newest Child SA."""
        if addr[2] == PACKET_OUTGOING or frame[12:14] not in ETHERTYPE.values() or (ends := _ip_ends(frame[14:])) is None:
            return
        src, dst, length = ends
        self._macs[str(src)] = frame[6:12]
        if self.children and any(dst in n for n in self._remote_nets):
            self._send_ipsec(self._newest_child(), with_checksum(frame[14:14 + length]))  # veth: maybe a partial sum

    def _to_lan(self, inner: bytes) -> bool:
        """Put a decapsulated packet for the LAN behind us on the wire; False if it is not for the LAN."""
        ends = _ip_ends(inner)
        if ends is None or str(ends[1]) == self.address or not any(ends[1] in n for n in self._lan_nets):
            return False
        assert self._lan_sock is not None
        own = self._lan_sock.getsockname()[4]
        self._lan_sock.send(self._macs.get(str(ends[1]), b"\xff" * 6) + own + ETHERTYPE[inner[0] >> 4] + inner)
        return True

    # -- the peer protocol --------------------------------------------------------------------------------
    def load(self, connection: Connection) -> None:
        """Take connection as the built-in end's one configuration (replacing any other and its key ledger), ready to answer."""
        if connection.local_addr not in (self.tester.address(version=4), self.tester.address(version=6)):
            raise ConfigError(f"builtin end: connection {connection.name}: local_addr {connection.local_addr} "
                              f"is not the tester's address ({self.tester.address(version=4)} or {self.tester.address(version=6)})")
        version = 6 if ":" in connection.local_addr else 4
        config = ike_config(connection, self.bugs, **self.config_overrides)

        def install() -> None:
            self.ike_keys.clear()  # the ledger is per configuration: a pooled end's next case starts without the
            self.ipsec_keys.clear()  # last case's SAs (they would land in its keys.json and hide unknown SPIs)
            self.crafted.clear()
            self.ip_version = version
            self.address = connection.local_addr
            self.connection = connection
            self.endpoint = IkeEndpoint(config, (connection.local_addr, 500), clock=self.clock)
            self.driver = SocketDriver(self.endpoint, self.tester.ike_sockets(version), clock=self.clock)
            self._gateway(connection)

        self._call(install)

    def unload(self, name: str) -> None:
        """Delete every IKE SA of the loaded connection (best effort, 5 s) and forget it."""
        if not self.connection or self.connection.name != name:
            return
        for sa in self._call(lambda: list(self.endpoint.established()) if self.endpoint else []):
            self._call(lambda sa=sa: self.driver.send(self.endpoint.delete_ike(sa)))
        deadline = time.monotonic() + 5
        while self._call(lambda: bool(self.endpoint and self.endpoint.established())) and time.monotonic() < deadline:
            time.sleep(0.05)

        def forget() -> None:
            self.connection = self.endpoint = self.driver = None
            self._lan_sock = None
            for data in self.children.values():
                self.sad.remove(data.receiver.sa)
            self.children.clear()

        self._call(forget)

    def restart(self) -> None:
        """Lose every SA without a Delete, as a host that restarted (RFC 7296 s2.4), and take the loaded connection
        again (config_overrides read anew); the key ledger keeps the lost SAs, so the capture still opens them."""
        _, _, c = self._need()
        config = ike_config(c, self.bugs, **self.config_overrides)

        def install() -> None:
            self._harvest()
            for data in self.children.values():
                self.sad.remove(data.receiver.sa)
            self.children.clear()
            self.endpoint = IkeEndpoint(config, (c.local_addr, 500), clock=self.clock)
            self.driver = SocketDriver(self.endpoint, self.tester.ike_sockets(self.ip_version), clock=self.clock)

        self._call(install)

    def _need(self) -> tuple[IkeEndpoint, SocketDriver, Connection]:
        if not (self.endpoint and self.driver and self.connection):
            raise LabError("builtin end: no connection loaded")
        return self.endpoint, self.driver, self.connection

    def initiate(self, name: str, timeout: float = 30.0, wait: bool = True) -> IkeSaRecord:
        """IKE_SA_INIT + IKE_AUTH to the remote end; Refused (its notify) or NoAnswer if no Child SA results."""
        ep, driver, c = self._need()
        mark = len(self.events)
        self._call(lambda: driver.send(ep.initiate((c.remote_addr, 500))))
        if not wait:
            return IkeSaRecord(name, "CONNECTING", c.local_addr, c.remote_addr, initiator=True)
        self.wait_event(lambda e: isinstance(e, ChildSaEstablished), mark, timeout, "IKE_AUTH with a Child SA")
        return next(s for s in self.list_sas() if s.established)

    def initiate_ike(self, name: str, timeout: float = 30.0) -> IkeSaRecord:
        """IKE_SA_INIT + IKE_AUTH without a Child SA (RFC 6023); Refused if the responder did not announce support
        or refused, NoAnswer on time-out; the IKE SA's record."""
        ep, driver, c = self._need()
        mark = len(self.events)
        self._call(lambda: driver.send(ep.initiate((c.remote_addr, 500), childless=True)))
        try:
            self.wait_event(lambda e: isinstance(e, ChildlessIkeSa), mark, timeout, "IKE_AUTH without a Child SA")
        except Refused as e:
            if "did not announce CHILDLESS_IKEV2_SUPPORTED" in str(e) and not self.bugs.childless_unannounced:
                raise UnsupportedFeature(f"the responder did not announce CHILDLESS_IKEV2_SUPPORTED (RFC 6023): {e}") from None
            raise
        return next(s for s in self.list_sas() if s.established)

    def create_child(self, name: str, timeout: float = 30.0) -> None:
        """CREATE_CHILD_SA for the connection's Child SA on the established IKE SA (RFC 7296 s1.3.1), waiting for it."""
        ep, driver, _ = self._need()
        sa = self._call(lambda: ep.established()[0] if ep.established() else None)
        if sa is None:
            raise LabError("builtin end: create_child: no established IKE SA")
        mark = len(self.events)
        self._call(lambda: driver.send(ep.create_child(sa)))
        self.wait_event(lambda e: isinstance(e, ChildSaEstablished), mark, timeout, "CREATE_CHILD_SA")

    def request(self, make: Callable[[IkeEndpoint], list[Any]]) -> None:
        """Send what make(endpoint) returns (a request of the caller's choosing, e.g. create_child), at once."""
        ep, driver, _ = self._need()
        self._call(lambda: driver.send(make(ep)))

    def read(self, look: Callable[[IkeEndpoint], T]) -> T:
        """What look(endpoint) returns, run in the loop (e.g. the window size the peer announced on an IKE SA)."""
        ep, _, _ = self._need()
        return self._call(lambda: look(ep))

    def wait_event(self, want: Callable[[Any], bool], since: int, timeout: float, what: str) -> Any:
        """The first event from index `since` on that `want` accepts; Refused on an error notify, NoAnswer on time-out."""
        deadline = time.monotonic() + timeout
        while True:
            for e in self.events[since:]:
                if want(e):
                    return e
                if isinstance(e, ExchangeFailed):
                    raise Refused(f"{e.exchange}: {'received' if e.received else 'sent'} {e.notify}: {e.message}",
                                  notify=e.notify)
                if isinstance(e, PeerDead):
                    raise NoAnswer(f"{e.exchange} (Message ID {e.message_id}) retransmitted without a response")
            if time.monotonic() > deadline:
                raise NoAnswer(f"{what}: not done within {timeout} s; built-in end's log:\n{self.logs()[-3000:]}")
            time.sleep(0.02)

    def terminate(self, name: str, timeout: float = 30.0) -> None:
        """Delete the IKE SA (INFORMATIONAL Delete) and wait for its response."""
        ep, driver, _ = self._need()
        for sa in self._call(lambda: list(ep.established())):
            mark = len(self.events)
            self._call(lambda sa=sa: driver.send(ep.delete_ike(sa)))
            self.wait_event(lambda e, sa=sa: isinstance(e, IkeSaDeleted) and e.spi_i == sa.spi_i, mark, timeout,
                            f"the Delete of IKE SA {sa.spi_i.hex()}_i answered")

    def delete_child(self, name: str, spi_in: int, timeout: float = 30.0) -> None:
        """INFORMATIONAL Delete of the Child SA receiving on spi_in, waiting for the answer; the IKE SA stays."""
        ep, driver, _ = self._need()
        spi = spi_in.to_bytes(4, "big")
        sa = self._call(lambda: next((s for s in ep.established() if spi in s.children), None))
        if sa is None:
            raise LabError(f"builtin end: no Child SA receiving on SPI 0x{spi_in:08x}")
        mark = len(self.events)
        self._call(lambda: driver.send(ep.delete_child(sa, spi)))
        self.wait_event(lambda e: isinstance(e, ChildSaDeleted) and e.spi_in == spi_in, mark, timeout,
                        f"INFORMATIONAL Delete of the Child SA 0x{spi_in:08x} answered")

    def rekey(self, name: str, what: str = "child", pfs_group: int | None = None, timeout: float = 60.0) -> None:
        """Rekey the newest Child SA ("child") or the IKE SA ("ike") and wait until the old one is deleted."""
        if what not in ("child", "ike"):
            raise ConfigError(f"rekey: what must be 'ike' or 'child', not {what!r}")
        ep, driver, _ = self._need()
        sa = self._call(lambda: ep.established()[0] if ep.established() else None)
        if sa is None:
            raise LabError("builtin end: rekey: no established IKE SA")
        mark = len(self.events)
        if what == "child":
            spi = next(s for s, ch in sa.children.items() if not ch.rekeyed)
            self._call(lambda: driver.send(ep.rekey_child(sa, spi, pfs_group)))
            self.wait_event(lambda e: isinstance(e, ChildSaDeleted), mark, timeout, "Child SA rekey")
        else:
            self._call(lambda: driver.send(ep.rekey_ike(sa)))
            self.wait_event(lambda e: isinstance(e, IkeSaDeleted), mark, timeout, "IKE SA rekey")

    def list_sas(self) -> list[IkeSaRecord]:
        """The built-in end's established IKE SAs and their Child SAs, with our own packet counters."""
        def read() -> list[IkeSaRecord]:
            out = []
            for sa in (self.endpoint.established() if self.endpoint else []):
                rec = IkeSaRecord(self.connection.name if self.connection else "", "ESTABLISHED", sa.local[0], sa.remote[0],
                                  int.from_bytes(sa.spi_i, "big"), int.from_bytes(sa.spi_r, "big"),
                                  sa.original_initiator, str(self.connection.local_id or sa.local[0]) if self.connection else "",
                                  sa.peer_id, sa.suite.encr.name if sa.suite and sa.suite.encr else None)
                for spi_in, ch in sa.children.items():
                    data = self.children.get(int.from_bytes(spi_in, "big"))
                    rec.children.append(ChildSaRecord(
                        rec.name, ch.protocol.name, ch.mode, int.from_bytes(spi_in, "big"), int.from_bytes(ch.spi_out, "big"),
                        "REKEYED" if ch.rekeyed else "INSTALLED", encap=ch.udp_encap,
                        local_ts=[str(t) for t in ch.ts_local], remote_ts=[str(t) for t in ch.ts_remote],
                        packets_in=data.receiver.accepted if data else 0,
                        packets_out=(data.sender.next_seq - 1) if data else 0))
                out.append(rec)
            return out

        return self._call(read)

    def keys(self) -> KeysFile:
        """Every SA this end has had keys for, live, half-made or deleted (what a capture needs to open)."""
        def read() -> KeysFile:
            self._harvest()
            return KeysFile(list(self.ipsec_keys.values()), {"ike_sas": list(self.ike_keys.values())})

        return self._call(read)

    def sa_keys(self) -> list[IpsecSaKeys]:
        """The ESP/AH SAs' keys (the ledger's ipsec part)."""
        return self.keys().ipsec_sas

    def xfrm_state(self) -> list[Any]:
        """No kernel SAs: the built-in end keeps its SAs in harness.esp."""
        return []

    def xfrm_policy(self) -> list[Any]:
        """No kernel policies at the built-in end."""
        return []

    def logs(self) -> str:
        """The built-in end's event log (IKE events, ESP drops), one line each."""
        return "\n".join(self.log) + "\n"

    def version(self) -> str:
        """What the report names this end."""
        return VERSION

    def algorithms(self) -> Algorithms:
        """Every transform harness.crypto implements."""
        return builtin_algorithms()

    def stop(self) -> None:
        """Stop the loop thread; the tester's sockets stay open (they belong to the lab)."""
        self._stop.set()
        self._wake_w.send(b"x")
        if self._thread:
            self._thread.join(5)
        self._wake_r.close()
        self._wake_w.close()

    # -- traffic -------------------------------------------------------------------------------------------
    def ping(self, dst: str, count: int = 3, timeout: float = 15.0, ident: int = 0x1515, src: str | None = None) -> int:
        """Send count echo requests (from src, default the connection's address) through the newest Child SA; the
        number of replies that came back through it."""
        def send() -> ChildData:
            data = self._newest_child()
            for seq in range(1, count + 1):
                self._send_ipsec(data, echo_packet(src or self.address, dst, ident, seq))
            return data

        data = self._call(send)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self._call(lambda: len({s for i, s in data.echo_replies if i == ident}))
            if got >= count:
                return got
            time.sleep(0.02)
        return self._call(lambda: len({s for i, s in data.echo_replies if i == ident}))

    def send_echo(self, dst: str, ident: int, seq: int, faults: Faults | None = None) -> None:
        """One echo request through the newest Child SA, with faults (e.g. Faults(corrupt_icv=True)) if given, as a
        buggy end would send it: the wire check faults it (send_crafted sends a case's deliberate packet)."""
        def send() -> None:
            saved, self.faults = self.faults, faults
            try:
                self._send_ipsec(self._newest_child(), echo_packet(self.address, dst, ident, seq))
            finally:
                self.faults = saved

        self._call(send)

    def stream_echo(self, dst: str, ident: int, seq: int) -> int:
        """One echo request through the Child SA a sender uses across a rekey (RFC 7296 s2.8): the newest one that it
        made as the exchange's initiator or that already carried a packet in, else the oldest live one (the rekey's
        responder keeps the old SA until the initiator uses the new one); the outbound SPI it went through, 0 when the
        built-in end holds no Child SA at that moment (nothing sent: e.g. a peer that deletes the old IKE SA before it
        makes the new one)."""
        def send() -> int:
            if not self.children:
                return 0
            made = {int.from_bytes(spi, "big") for sa in (self.endpoint.sas.values() if self.endpoint else ())
                    for spi, ch in sa.children.items() if ch.we_initiated}
            usable = [d for spi, d in self.children.items() if spi in made or d.receiver.accepted]
            data = usable[-1] if usable else next(iter(self.children.values()))
            self._send_ipsec(data, echo_packet(self.address, dst, ident, seq))
            return data.sender.sa.spi

        return self._call(send)

    def echo_through(self, spi_in: int, dst: str, ident: int, seq: int) -> None:
        """One echo request through the Child SA whose inbound SPI is spi_in (its reply may come through any)."""
        def send() -> None:
            data = self.children.get(spi_in)
            if data is None:
                raise LabError(f"builtin end: no live Child SA receiving on SPI 0x{spi_in:08x}")
            self._send_ipsec(data, echo_packet(self.address, dst, ident, seq))

        self._call(send)

    def send_crafted(self, make: Callable[[Sender], bytes]) -> bytes:
        """Send the outer packet make(sender of the newest Child SA) returns (e.g. tx.protect(inner, Faults(seq=7)),
        tx.dummy(), tx.replay()), recorded as crafted so the wire check excuses it; the packet sent."""
        return self._call(lambda: self._craft(self._newest_child(), make))

    def send_inner(self, inner: bytes) -> None:
        """Send an inner IP packet (any protocol) through the newest Child SA, as the built-in end's own traffic."""
        self._call(lambda: self._send_ipsec(self._newest_child(), inner))

    def echo_replied(self, ident: int, seq: int) -> bool:
        """True once an echo reply (ident, seq) came back through any live Child SA."""
        return self._call(lambda: any((ident, seq) in d.echo_replies for d in self.children.values()))

    def udp_received(self) -> list[bytes]:
        """The UDP packets (whole IP packets, transport mode) received through the live Child SAs so far."""
        return self._call(lambda: [p for d in self.children.values() for p in d.udp_in])

    def ah_shapes(self, spi_in: int) -> dict[tuple[int, int], int]:
        """The AH packets that verified on the inbound SA spi_in: (octets of IP header and extension headers before
        AH, AH octets as its Payload Len states, RFC 4302 s2.2) -> how many."""
        return self._call(lambda: dict(self.children[spi_in].ah_shapes) if spi_in in self.children else {})

    def _newest_child(self) -> ChildData:
        if not self.children:
            raise LabError("builtin end: no Child SA to send through")
        return self.children[next(reversed(self.children))]


def _ip_ends(ip: bytes) -> tuple[Any, Any, int] | None:
    """(source, destination, length) of an IPv4 or IPv6 packet or fragment, None if it is neither."""
    if len(ip) >= 20 and ip[0] >> 4 == 4:
        return ipaddress.ip_address(ip[12:16]), ipaddress.ip_address(ip[16:20]), int.from_bytes(ip[2:4], "big")
    if len(ip) >= 40 and ip[0] >> 4 == 6:
        return ipaddress.ip_address(ip[8:24]), ipaddress.ip_address(ip[24:40]), 40 + int.from_bytes(ip[4:6], "big")
    return None


def _udp_wrap(esp: bytes, end: BuiltinEnd) -> bytes | None:
    """ESP received on UDP 4500 as the SA database parses it: an outer IP+UDP header around it."""
    for data in end.children.values():
        sa = data.receiver.sa
        if sa.udp_encap and int.from_bytes(esp[:4], "big") == sa.spi:
            return _ip_udp(sa.src, sa.dst, sa.udp_encap, esp)
    return None


def _ip_udp(src: str, dst: str, ports: tuple[int, int], payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", ports[0], ports[1], 8 + len(payload), 0) + payload
    return ipv4_packet(src, dst, 17, udp)


def _describe(e: Any) -> str:
    if isinstance(e, ChildSaEstablished):
        return f"{e.inbound.protocol} in 0x{e.inbound.spi:08x} out 0x{e.outbound.spi:08x} {e.inbound.mode}"
    if isinstance(e, ChildSaDeleted):
        return f"{e.protocol} in 0x{e.spi_in:08x} out 0x{e.spi_out:08x}"
    if isinstance(e, (IkeSaEstablished, IkeSaDeleted)):
        return ", ".join(f"{k}={v.hex() if isinstance(v, bytes) else v}" for k, v in vars(e).items() if k != "keys")
    return ", ".join(f"{k}={_short(v)}" for k, v in vars(e).items())


def _short(v: Any) -> str:
    """An event field for the log: SPIs in hex, a datagram by its length."""
    if isinstance(v, bytes):
        return v.hex() if len(v) <= 16 else f"<{len(v)} bytes>"
    return str(v)

