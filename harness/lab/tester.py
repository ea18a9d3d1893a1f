"""The tester node's sockets, created inside its namespace (setns in a thread) and kept open for the lab's life."""
from __future__ import annotations

import socket
from dataclasses import dataclass, field

from harness.errors import LabError
from harness.lab import netns, raw6

IKE_PORT = 500
NATT_PORT = 4500
IPPROTO_ESP = 50
IPPROTO_AH = 51
ETH_P_ALL = 0x0003


@dataclass(frozen=True)
class TesterAddress:
    """One address of the tester: the segment, its interface, and IPv4/IPv6 addresses (no prefix)."""

    segment: str
    ifname: str
    v4: str
    v6: str


@dataclass
class Tester:
    """The tester node: its namespace, addresses and the sockets the built-in stack uses.

    udp[(version, port)]: UDP sockets bound to 500 and 4500 (IPv4 0.0.0.0, IPv6 ::, v6-only).
    raw[(version, proto)]: raw IP sockets for ESP (50) and AH (51); IPv4 ones receive the IP header, IPv6 ones
    send whole packets and are read with harness.lab.raw6.receive (which rebuilds the header).
    packet[ifname]: AF_PACKET sockets (all protocols) bound to each interface, for capture and injection.
    """

    netns: str
    addresses: list[TesterAddress]
    udp: dict[tuple[int, int], socket.socket] = field(default_factory=dict)
    raw: dict[tuple[int, int], socket.socket] = field(default_factory=dict)
    packet: dict[str, socket.socket] = field(default_factory=dict)

    def open(self) -> "Tester":
        """Create every socket inside the tester namespace; LabError if one cannot be made."""
        netns.run_in(self.netns, self._open_here)
        return self

    def _open_here(self) -> None:
        try:
            for port in (IKE_PORT, NATT_PORT):
                s4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s4.bind(("0.0.0.0", port))
                self.udp[(4, port)] = s4
                s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
                s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                s6.bind(("::", port))
                self.udp[(6, port)] = s6
            for proto in (IPPROTO_ESP, IPPROTO_AH):
                self.raw[(4, proto)] = socket.socket(socket.AF_INET, socket.SOCK_RAW, proto)
                self.raw[(6, proto)] = socket.socket(socket.AF_INET6, socket.SOCK_RAW, proto)
                raw6.enable(self.raw[(6, proto)])
            for a in self.addresses:
                # protocol 0 then bind(ETH_P_ALL): socket(ETH_P_ALL) costs 8-16 ms here (RCU grace period)
                p = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
                p.bind((a.ifname, ETH_P_ALL))
                self.packet[a.ifname] = p
        except OSError as e:
            self.close()
            raise LabError(f"tester sockets in {self.netns}: {e}") from e

    def address(self, segment: str | None = None, version: int = 4) -> str:
        """The tester's address on a segment (default: its first), without prefix."""
        for a in self.addresses:
            if segment is None or a.segment == segment:
                return a.v4 if version == 4 else a.v6
        raise LabError(f"tester has no address on segment {segment!r}")

    def ike_sockets(self, version: int = 4) -> dict[int, socket.socket]:
        """The IKE sockets by local port (500, 4500) for one address family, e.g. for harness.lab.driver."""
        return {port: self.udp[(version, port)] for port in (IKE_PORT, NATT_PORT)}

    def sockets(self) -> list[socket.socket]:
        """Every open socket of the tester."""
        return [*self.udp.values(), *self.raw.values(), *self.packet.values()]

    def drain(self) -> int:
        """Discard whatever is queued on every socket (between tests); the number of datagrams dropped."""
        dropped = 0
        for s in self.sockets():
            s.setblocking(False)
            try:
                while True:
                    s.recv(65535)
                    dropped += 1
            except (BlockingIOError, InterruptedError):
                pass
            finally:
                s.setblocking(True)
        return dropped

    def close(self) -> None:
        """Close every socket (idempotent)."""
        for s in self.sockets():
            s.close()
        self.udp.clear()
        self.raw.clear()
        self.packet.clear()
