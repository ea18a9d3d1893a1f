"""The built-in end's side of harness.cases.flows without a lab: inner fragments reassembled, UDP echoed, SYNs reset."""
from __future__ import annotations

from types import SimpleNamespace

from harness.cases.flows import ECHO_PORT, Flows
from harness.esp.fragment import fragment
from harness.lab.datagrams import ACK, RST, SYN, parse_transport, tcp_packet, udp_packet
from harness.peers.connection import connection_from_dict

OWN, OTHER = "2001:db8::2", "2001:db8::3"


def _flows() -> Flows:
    conn = connection_from_dict({"name": "case", "local_addr": OWN, "remote_addr": OTHER, "mode": "tunnel",
                                 "auth": {"psk": "x" * 20}}, "test")
    builtin, peer = SimpleNamespace(builtin=True), SimpleNamespace(builtin=False)
    pair = SimpleNamespace(conn=conn, builtin_end=builtin, peer=peer,
                           address=lambda end, version: OWN if end is builtin else OTHER)
    return Flows(pair)


def test_inner_fragments_are_reassembled_and_the_datagram_echoed():
    flows = _flows()
    datagram = udp_packet(OTHER, OWN, 40000, ECHO_PORT, bytes(3000))
    pieces = fragment(datagram, 1400, 77)
    answers = [flows._on_inner(p) for p in pieces]
    assert answers[:-1] == [None] * (len(pieces) - 1) and flows.seen.inner_fragments == len(pieces)
    echo = parse_transport(answers[-1])
    assert echo is not None and (echo.src, echo.dst, echo.sport, echo.dport) == (OWN, OTHER, ECHO_PORT, 40000)
    assert echo.payload == bytes(3000) and [t.dport for t in flows.seen.segments] == [ECHO_PORT]


def test_a_syn_and_a_syn_ack_are_reset_and_other_datagrams_only_recorded():
    flows = _flows()
    rst = parse_transport(flows._on_inner(tcp_packet(OTHER, OWN, 40001, ECHO_PORT, 10, 0, SYN)))
    assert rst is not None and rst.flags == RST | ACK and rst.ack == 11
    rst = parse_transport(flows._on_inner(tcp_packet(OTHER, OWN, ECHO_PORT, 40002, 99, 1235, SYN | ACK)))
    assert rst is not None and rst.flags == RST and rst.seq == 1235
    assert flows._on_inner(udp_packet(OTHER, OWN, 40003, 9, b"not for the echo port")) is None
    assert len(flows.seen.segments) == 3
