"""UDP and TCP through a Child SA both ways, in sizes up to and past the path MTU (RFC 4303 s3.3.4, s3.4.1).

In the peer's guest a small python3 server (SERVER, spawned, stopped by its pid) echoes UDP datagrams on ECHO_PORT
and listens for TCP there; a python3 client (CLIENT, one exec) sends from the guest. At the built-in end a hook on
its inner packets (BuiltinEnd.inner_hooks) reassembles inner fragments, records every UDP datagram and TCP segment
it decrypted, echoes UDP sent to ECHO_PORT and answers a SYN (and the guest's SYN-ACK: it holds no connection)
with an RST (RFC 9293 s3.10.7.1). `Flows.run(flow)` runs one flow of a table row and judges it by what the
built-in end decrypted and the peer kernel's counters (its inbound SA's packets, Ip.ReasmOKs, Ip.FragCreates),
never by a program's exit status; it returns what was measured (which side fragmented, inner or outer).
"""
from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from harness.cases.dataplane import KernelCounters
from harness.errors import ConfigError, LabError, PeerFault, UnsupportedFeature
from harness.esp.esp import EspCodec
from harness.esp.fragment import fragment
from harness.lab.datagrams import ACK, SYN, TCP, UDP, Transport, parse_transport, reset_for, tcp_packet, udp_packet
from harness.peers.builtin import LINK_MTU
from harness.report.steps import check_step, now_ms
from harness.tools.reassembly import Reassembler

ECHO_PORT = 7  # RFC 862: the echo service, UDP and TCP
SERVER_LOG = "/tmp/ipsec-interop-flows.log"
SMALL = 64  # octets of data of a small datagram
SIZES = ("small", "fit", "over", "3000")  # fit: the inner packet whose ESP packet is exactly the link MTU; over: +1

SERVER = r"""
import select, socket, sys
port = int(sys.argv[1])
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
u.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
u.bind(("::", port))
t = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
t.bind(("::", port))
t.listen(8)
print("ready", flush=True)
while True:
    r, _, _ = select.select([u, t], [], [])
    if u in r:
        data, a = u.recvfrom(65535)
        u.sendto(data, a)
    if t in r:
        t.accept()[0].close()
"""

# argv: udp|tcp ADDRESS PORT SIZE; prints "echo N", "refused", "connected" or "timeout"; a UDP datagram is sent up
# to 4 times, as an application does when its first is lost to path MTU discovery (an ICMPv6 Packet Too Big or
# ICMP Fragmentation Needed teaches the sender's kernel the tunnel's MTU: RFC 4301 s8.2); stderr: the attempts
CLIENT = r"""
import socket, sys
kind, addr, port, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
s.settimeout(10)
try:
    if kind == "udp":
        for attempt in range(1, 5):
            s.settimeout(2 ** (attempt - 1))  # 1, 2, 4, 8 s: a lost first datagram costs 1 s, a slow guest is waited for
            s.sendto(bytes(i % 251 for i in range(size)), (addr, port))
            try:
                got = s.recv(65535)
                break
            except socket.timeout:
                if attempt == 4:
                    raise
        print("attempts", attempt, file=sys.stderr)
        print("echo", len(got))
    else:
        s.connect((addr, port))
        print("connected")
except ConnectionRefusedError:
    print("refused")
except OSError as e:
    print("timeout", e)
"""


def datagram(size: int) -> bytes:
    """The data of a datagram of size octets (the client's pattern: i mod 251)."""
    return bytes(i % 251 for i in range(size))


def fit(codec: EspCodec, mode: str, version: int, mtu: int = LINK_MTU) -> int:
    """The longest inner IP packet whose ESP packet (IP header and ESP) is at most mtu octets (RFC 4303 s2.4)."""
    ip = 20 if version == 4 else 40
    for n in range(mtu, 0, -1):
        payload = n if mode == "tunnel" else n - ip
        esp = 8 + codec.iv_size + (payload + 2 + codec.align - 1) // codec.align * codec.align + codec.icv_size
        if ip + esp <= mtu:
            return n
    raise ConfigError(f"no inner packet fits an MTU of {mtu}")


@dataclass
class Seen:
    """What the built-in end decrypted during the case: transport segments, and inner fragments (datagrams, pieces)."""

    segments: list[Transport] = field(default_factory=list)
    inner_fragments: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Flows:
    """A case's UDP/TCP flows between the built-in end and the peer (see module doc); a context manager."""

    def __init__(self, pair: Any) -> None:
        self.pair = pair
        self.seen = Seen()
        self._reasm = Reassembler()
        self._ports = itertools.count(40000)
        self._pid: int | None = None
        if pair.conn is None:
            raise LabError("flows: no Child SA established yet (call pair.establish first)")
        self.mode, self.version = pair.conn.mode, 6 if ":" in pair.conn.local_addr else 4
        self.own = pair.address(pair.builtin_end, self.version)
        self.other = pair.address(pair.peer, self.version)

    def __enter__(self) -> "Flows":
        node = self.pair.peer.runtime_node
        if node is None or not hasattr(node, "spawn"):
            raise UnsupportedFeature(f"{self.pair.peer.name}: no guest to run the echo server in")
        self.pair.builtin.inner_hooks.append(self._on_inner)
        run = self.pair.peer.adapter.run
        try:
            run(["rm", "-f", SERVER_LOG])  # a pooled guest keeps the last case's log, "ready" in it
            self._pid = node.spawn(["python3", "-c", SERVER, str(ECHO_PORT)], SERVER_LOG)
            self.pair.wait(lambda: "ready" in run(["cat", SERVER_LOG], check=False),
                           f"the UDP/TCP echo server in {node.name} ready")
        except BaseException:
            self.__exit__()  # the pooled built-in end and guest go to the next case without our hook and server
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.pair.builtin.inner_hooks.remove(self._on_inner)
        if self._pid is not None:
            self.pair.peer.runtime_node.exec(["kill", str(self._pid)], timeout=10)

    # -- the built-in end's side (runs in its loop thread) ---------------------------------------------
    def _on_inner(self, inner: bytes) -> bytes | None:
        whole = self._reasm.add(inner)
        if whole is not inner:
            with self.seen.lock:
                self.seen.inner_fragments += 1
        if whole is None:
            return None
        t = parse_transport(whole)
        if t is None:
            return None
        with self.seen.lock:
            self.seen.segments.append(t)
        if t.proto == UDP and t.dport == ECHO_PORT:
            return udp_packet(t.dst, t.src, t.dport, t.sport, t.payload)
        if t.proto == TCP and t.flags & SYN:
            return reset_for(t)
        return None

    def _got(self, want: Any, since: int) -> list[Transport]:
        """The segments decrypted from index since on that want accepts."""
        with self.seen.lock:
            return [t for t in self.seen.segments[since:] if want(t)]

    # -- one flow ----------------------------------------------------------------------------------------
    def size(self, name: str) -> int:
        """Octets of UDP data of a size name (SIZES) for this Child SA."""
        if name == "small":
            return SMALL
        if name == "3000":
            return 3000
        codec = EspCodec(self._sa().sa)
        base = fit(codec, self.mode, self.version) - (20 if self.version == 4 else 40) - 8
        if name == "fit":
            return base
        if name == "over":
            return base + 1
        raise ConfigError(f"flow size {name!r} is none of {SIZES}")

    def _sa(self) -> Any:
        children = self.pair.builtin.children
        if not children:
            raise LabError("flows: the built-in end holds no Child SA")
        return children[next(reversed(children))].sender

    def run(self, flow: dict[str, Any]) -> dict[str, Any]:
        """Run one flow ({"proto": "udp"|"tcp", "from": "builtin"|"peer", "size": SIZES}); what was measured.
        PeerFault naming the requirement if the peer's kernel did not carry it."""
        t0, start = time.perf_counter(), now_ms()
        before, inbound = self.pair.counters(), self.pair.inbound()
        mark, frags = len(self.seen.segments), self.seen.inner_fragments
        n = self.size(flow.get("size", "small")) if flow["proto"] == "udp" else 0
        what = f"{flow['proto'].upper()} {'from the built-in end to' if flow['from'] == 'builtin' else 'from'} " \
               f"{self.pair.peer.name}" + (f", {n} octets of data" if n else "")
        if flow["from"] == "builtin":
            self._from_builtin(flow, n, mark, what)
            replies = 1
        else:
            out, replies = self._from_peer(flow, n, mark, what)
            flow = {**flow, "client": out}
        got = self._settled(before, inbound, replies).rose(before, inbound)
        v6 = self.version == 6
        measured = {**flow, "octets": n, "peer_reassembled": got.get("Ip6ReasmOKs" if v6 else "Ip.ReasmOKs", 0),
                    "peer_fragments_created": got.get("Ip6FragCreates" if v6 else "Ip.FragCreates", 0),
                    "inner_fragments_seen": self.seen.inner_fragments - frags, "inbound_packets": got.get("packets", 0),
                    "segments_seen": len(self.seen.segments) - mark, "seconds": round(time.perf_counter() - t0, 2)}
        self.pair.steps.append(check_step(
            f"flow: {what}, carried; {self.pair.peer.name}'s inbound SA counted {measured['inbound_packets']}, "
            f"it reassembled {measured['peer_reassembled']} and created {measured['peer_fragments_created']} fragments",
            True, start))
        return measured

    def _from_builtin(self, flow: dict[str, Any], n: int, mark: int, what: str) -> None:
        """A UDP datagram (echoed by the guest) or a SYN (answered with SYN-ACK) from the built-in end, waited for."""
        sport = next(self._ports)
        if flow["proto"] == "udp":
            self._send(udp_packet(self.own, self.other, sport, ECHO_PORT, datagram(n)), flow.get("split", "outer"))
            want = lambda t: (t.proto == UDP and t.sport == ECHO_PORT and t.dport == sport  # noqa: E731
                              and t.payload == datagram(n))
            self.pair.wait(lambda: self._got(want, mark), f"{what}: the echoed datagram back through the Child SA")
            return
        isn = 0x49500000 + sport
        self._send(tcp_packet(self.own, self.other, sport, ECHO_PORT, isn, 0, SYN), "outer")
        want = lambda t: (t.proto == TCP and t.dport == sport and t.flags & (SYN | ACK) == SYN | ACK  # noqa: E731
                          and t.ack == isn + 1)
        self.pair.wait(lambda: self._got(want, mark), f"{what}: the listener's SYN-ACK back through the Child SA")

    def _from_peer(self, flow: dict[str, Any], n: int, mark: int, what: str) -> tuple[str, int]:
        """The guest's client sends a UDP datagram (the built-in end echoes it) or a SYN (the built-in end resets
        it); the client's output and how many such datagrams or SYNs the built-in end decrypted. PeerFault if none."""
        out = self.pair.peer.adapter.run(["python3", "-c", CLIENT, flow["proto"], self.own, str(ECHO_PORT), str(n)],
                                         timeout=30).strip()
        if flow["proto"] == "udp":
            want = lambda t: t.proto == UDP and t.dport == ECHO_PORT and t.payload == datagram(n)  # noqa: E731
        else:
            want = lambda t: t.proto == TCP and t.dport == ECHO_PORT and t.flags & (SYN | ACK) == SYN  # noqa: E731
        got = self._got(want, mark)
        if not got:
            raise PeerFault(f"{what}: the built-in end decrypted no such {'datagram' if flow['proto'] == 'udp' else 'SYN'}"
                            f" (the guest's client said {out!r})", self.pair.requirement)
        return out, len(got)

    def _settled(self, before: KernelCounters, inbound: tuple[str, int], replies: int) -> KernelCounters:
        """The peer's counters once its inbound SA counted the built-in end's packets (at least replies of them)."""
        state: dict[str, KernelCounters] = {}

        def counted() -> bool:
            state["now"] = self.pair.counters()
            return state["now"].rose(before, inbound).get("packets", 0) >= replies

        self.pair.wait(counted, f"{self.pair.peer.name}'s inbound SA 0x{inbound[1]:08x} counts the built-in end's "
                                f"{replies} packet(s) of the flow")
        return state["now"]

    def _send(self, inner: bytes, split: str) -> None:
        """inner through the Child SA: whole (the built-in end fragments the ESP packet if it is longer than the
        link, RFC 4303 s3.3.4), or split "inner" (tunnel mode: the inner packet in fragments that each fit)."""
        if split == "inner" and self.mode == "tunnel":
            pieces = fragment(inner, fit(EspCodec(self._sa().sa), "tunnel", self.version), next(self._ports))
        else:
            pieces = [inner]
        for p in pieces:
            self.pair.builtin.send_inner(p)
