"""The built-in end's data-plane additions without a lab: outer fragmentation of long ESP packets, the inner-packet
hooks, and IPv6 gateway mode (a fake tester records what would go on the wire)."""
from __future__ import annotations

import os
from typing import Any

from harness.esp import Receiver, Sender, SecurityAssociation
from harness.lab.datagrams import parse_transport, udp_packet
from harness.lab import tester as lab_tester
from harness.peers.builtin import LINK_MTU, BuiltinEnd, ChildData
from harness.peers.connection import connection_from_dict
from harness.tools.reassembly import Reassembler

WAN = ("198.18.0.2", "2001:db8::2")
PEER = "2001:db8::3"
HOST, FAR = "2001:db8:1::a", "2001:db8:2::a"
HOST_MAC = b"\x02\x00\x00\x00\x00\x0a"


class _Sock:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def sendto(self, data: bytes, addr: Any) -> None:
        self.sent.append(data)

    def send(self, data: bytes) -> None:
        self.sent.append(data)

    def setsockopt(self, *args: Any) -> None:
        pass

    def getsockname(self) -> tuple[Any, ...]:
        return ("tlan", 0x86DD, 0, 0, b"\x02\x00\x00\x00\x00\x01")


class _Tester:
    def __init__(self) -> None:
        self.addresses = [lab_tester.TesterAddress("wan", "wan", *WAN), lab_tester.TesterAddress("tlan", "tlan", "198.18.1.1", "2001:db8:1::1")]
        self.raw = {(v, p): _Sock() for v in (4, 6) for p in (50, 51)}
        self.packet = {"tlan": _Sock()}

    def address(self, segment: str | None = None, version: int = 4) -> str:
        return WAN[0] if version == 4 else WAN[1]

    def ike_sockets(self, version: int) -> dict[int, Any]:
        return {}


def _sa(spi: int, src: str, dst: str, mode: str) -> SecurityAssociation:
    return SecurityAssociation(protocol="esp", spi=spi, src=src, dst=dst, mode=mode, encryption="ENCR_AES_GCM_16",
                               encryption_key=os.urandom(20))


def _end(mode: str) -> tuple[BuiltinEnd, SecurityAssociation, SecurityAssociation]:
    """A built-in end over IPv6 with one Child SA to PEER (out, in) and no loop thread."""
    end = BuiltinEnd(_Tester(), version=6)
    end._call = lambda fn, timeout=30.0: fn()  # type: ignore[method-assign]
    out, inn = _sa(0x1001, WAN[1], PEER, mode), _sa(0x2002, PEER, WAN[1], mode)
    end.children[inn.spi] = ChildData(Sender(out), end.sad.add(inn))
    return end, out, inn


def test_an_esp_packet_longer_than_the_link_leaves_in_fragments_that_reassemble():
    end, out, _ = _end("tunnel")
    inner = udp_packet(WAN[1], PEER, 40000, 7, bytes(3000))
    end.send_inner(inner)
    pieces = end.tester.raw[(6, 50)].sent
    assert len(pieces) == 3 and all(len(p) <= LINK_MTU for p in pieces)
    r = Reassembler()
    whole = [w for p in pieces if (w := r.add(p)) is not None]
    assert Receiver(out).unprotect(whole[0]).inner == inner


def test_an_inner_packet_that_is_no_echo_goes_to_the_hooks_and_their_answer_back_through_the_sa():
    end, out, inn = _end("transport")
    seen: list[bytes] = []

    def echo(inner: bytes) -> bytes | None:
        seen.append(inner)
        t = parse_transport(inner)
        return udp_packet(t.dst, t.src, t.dport, t.sport, t.payload) if t else None

    end.inner_hooks.append(echo)
    request = udp_packet(PEER, WAN[1], 5000, 7, b"hello")
    end._on_ipsec(Sender(inn).protect(request))
    assert seen == [request]
    answer = Receiver(out).unprotect(end.tester.raw[(6, 50)].sent[0]).inner
    assert parse_transport(answer) == parse_transport(udp_packet(WAN[1], PEER, 7, 5000, b"hello"))


def test_ipv6_gateway_mode_tunnels_the_hosts_packets_and_delivers_the_answers():
    end, out, inn = _end("tunnel")
    end.address = WAN[1]
    end._gateway(connection_from_dict({"name": "case", "local_addr": WAN[1], "remote_addr": PEER, "mode": "tunnel",
                                       "local_ts": ["2001:db8:1::/64"], "remote_ts": ["2001:db8:2::/64"],
                                       "auth": {"psk": "x" * 20}}, "test"))
    lan = end.tester.packet["tlan"]
    assert end._lan_sock is lan
    request = udp_packet(HOST, FAR, 40000, 7, b"from the host")
    partial = request[:46] + b"\x00\x01" + request[48:]  # as a veth hands it over: the checksum not yet complete
    end._on_lan(b"\x02\x00\x00\x00\x00\x01" + HOST_MAC + b"\x86\xdd" + partial, ("tlan", 0x86DD, 0, 0, HOST_MAC))
    assert Receiver(out).unprotect(end.tester.raw[(6, 50)].sent[0]).inner == request
    answer = udp_packet(FAR, HOST, 7, 40000, b"back")
    end._on_ipsec(Sender(inn).protect(answer))
    assert lan.sent == [HOST_MAC + b"\x02\x00\x00\x00\x00\x01" + b"\x86\xdd" + answer]
