"""UDP and TCP between the hosts behind two tunnel gateways (RFC 4301 s4.1, RFC 4303 s3.1.2): real sockets.

The hosts are network namespaces with their own stacks: each runs harness.cases.flows.SERVER (an echo on UDP and a
TCP listener, stopped by its pid at the end), and a flow runs harness.cases.flows.CLIENT in one host towards the
other. A flow is judged by both gateways' Child SA counters (each inbound SA counts the packets the other gateway
tunnelled) and by the client's socket receiving the echo or completing the handshake through the tunnel; the
decrypted capture is checked after the case (wire check).
"""
from __future__ import annotations

import select
import subprocess
import time
from typing import Any

from harness.cases.dataplane import read_counters
from harness.cases.flows import CLIENT, ECHO_PORT, SERVER
from harness.errors import LabError, PeerFault
from harness.lab import netns
from harness.report.steps import check_step, now_ms

READY = 30.0  # bound for a server's first line
TOO_BIG = ("Icmp.OutDestUnreachs", "Icmp6OutPktTooBigs")  # a gateway telling a host the tunnel's MTU (RFC 4301 s8.2)


class HostFlows:
    """The case's flows between the hosts behind its two ends (see module doc); a context manager."""

    def __init__(self, pair: Any) -> None:
        self.pair = pair
        if pair.conn is None:
            raise LabError("host flows: no Child SA established yet (call pair.establish first)")
        self.version = 6 if ":" in pair.conn.local_addr else 4
        self.hosts = {e.name: pair.host_behind(e) for e in pair.ends}
        if None in self.hosts.values():
            raise LabError(f"pair {pair.spec.id}: host flows need a host behind each end (topology 'tunnel')")
        self._servers: list[subprocess.Popen[str]] = []

    def __enter__(self) -> "HostFlows":
        for host in self.hosts.values():
            p = subprocess.Popen(netns.exec_argv(host.netns, ["python3", "-c", SERVER, str(ECHO_PORT)]),
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            self._servers.append(p)
            assert p.stdout is not None
            up = select.select([p.stdout], [], [], READY)[0]  # it prints "ready" once bound, or dies with its error
            line = p.stdout.readline() if up else f"no line within {READY:.0f} s\n"
            if line.strip() != "ready":
                self.__exit__()
                raise LabError(f"echo server in {host.name}: {line}{p.stdout.read() if p.poll() is not None else ''}")
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self._servers:
            p.terminate()
            p.wait(10)

    def run(self, flow: dict[str, Any]) -> dict[str, Any]:
        """One flow ({"proto": "udp"|"tcp", "from": "initiator"|"responder", "size": octets}) from the host behind
        that end to the host behind the other; what was measured. PeerFault if it did not cross the tunnel."""
        t0, start = time.perf_counter(), now_ms()
        src = self.pair.initiator if flow["from"] == "initiator" else self.pair.responder
        dst = self.pair.responder if src is self.pair.initiator else self.pair.initiator
        to = self.hosts[dst.name].address(version=self.version)
        before = {e.name: self.pair.child(e).packets_in for e in self.pair.ends}
        n = int(flow.get("size", 64)) if flow["proto"] == "udp" else 0
        peers = {e.name: e.adapter for e in self.pair.ends if not e.builtin}
        icmp_before = {name: read_counters(a) for name, a in peers.items()} if n > 1500 else {}
        r = self.pair.lab.exec(self.hosts[src.name].name, ["python3", "-c", CLIENT, flow["proto"], to, str(ECHO_PORT),
                                                           str(n)], timeout=30)
        out = r.stdout.strip()
        want = f"echo {n}" if flow["proto"] == "udp" else "connected"
        what = f"{flow['proto'].upper()} from the host behind {src.name} to the host behind {dst.name}" + \
            (f", {n} octets of data" if n else "")
        counted: dict[str, int] = {}
        if out != want:
            counted.update({e.name: self.pair.child(e).packets_in - before[e.name] for e in self.pair.ends})
            raise PeerFault(f"{what}: the client said {out!r} ({r.stderr.strip()[-300:]}); the gateways' inbound SAs "
                            f"counted {counted} packet(s)", self.pair.requirement)

        def both_counted() -> bool:
            counted.update({e.name: self.pair.child(e).packets_in - before[e.name] for e in self.pair.ends})
            return all(v > 0 for v in counted.values())

        self.pair.wait(both_counted, f"{what}: each gateway's inbound SA counts the tunnelled packets ({counted})")
        now = {name: read_counters(peers[name]) for name in icmp_before}
        too_big = {name: sum(now[name].stat.get(k, 0) - was.stat.get(k, 0) for k in TOO_BIG)
                   for name, was in icmp_before.items()}
        self.pair.steps.append(check_step(f"host flow: {what}, carried; inbound SAs counted {counted}", True, start))
        return {**flow, "client": out, "client_stderr": r.stderr.strip(), "inbound_packets": counted,
                "peer_sent_too_big": too_big, "seconds": round(time.perf_counter() - t0, 2)}
