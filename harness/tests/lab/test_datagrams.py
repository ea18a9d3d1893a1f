"""UDP/TCP packets of the built-in end's flows (harness.lab.datagrams) and the ESP size arithmetic of harness.cases.flows."""
from __future__ import annotations

import struct

import pytest
from scapy.layers.inet import IP, TCP as ScapyTCP, UDP as ScapyUDP
from scapy.layers.inet6 import IPv6

from harness.cases.flows import fit
from harness.esp import Sender
from harness.esp.esp import EspCodec
from harness.lab.datagrams import ACK, RST, SYN, TCP, UDP, parse_transport, reset_for, tcp_packet, udp_packet, with_checksum
from harness.esp.sa import SecurityAssociation
from harness.tests.esp.packets import keymat


@pytest.mark.parametrize("src,dst", [("198.18.0.2", "198.18.0.3"), ("2001:db8::2", "2001:db8::3")])
def test_udp_checksum_agrees_with_scapy_and_parses_back(src, dst):
    pkt = udp_packet(src, dst, 40000, 7, b"abc" * 100, ident=5)
    layer = (IP if ":" not in src else IPv6)(pkt)
    want = layer[ScapyUDP].chksum
    del layer[ScapyUDP].chksum
    assert (IP if ":" not in src else IPv6)(bytes(layer))[ScapyUDP].chksum == want
    if ":" not in src:
        assert not struct.unpack_from("!H", pkt, 6)[0] & 0x4000  # no DF: the packet may be fragmented
    t = parse_transport(pkt)
    assert t is not None and (t.proto, t.src, t.dst, t.sport, t.dport, t.payload) == (UDP, src, dst, 40000, 7, b"abc" * 100)


@pytest.mark.parametrize("src,dst", [("198.18.0.2", "198.18.0.3"), ("2001:db8::2", "2001:db8::3")])
def test_a_syn_is_answered_with_rst_ack_and_a_syn_ack_with_rst(src, dst):
    syn = parse_transport(tcp_packet(src, dst, 40001, 7, 1000, 0, SYN))
    assert syn is not None and syn.proto == TCP and syn.flags == SYN
    rst = parse_transport(reset_for(syn))
    assert rst is not None and (rst.src, rst.dst, rst.sport, rst.dport) == (dst, src, 7, 40001)
    assert rst.flags == RST | ACK and rst.seq == 0 and rst.ack == 1001  # RFC 9293 s3.10.7.1: the SYN counts one
    synack = parse_transport(tcp_packet(dst, src, 7, 40001, 5000, 1001, SYN | ACK))
    assert synack is not None
    rst2 = parse_transport(reset_for(synack))
    assert rst2 is not None and rst2.flags == RST and rst2.seq == 1001
    layer = (IP if ":" not in src else IPv6)(reset_for(syn))
    want = layer[ScapyTCP].chksum
    del layer[ScapyTCP].chksum
    assert (IP if ":" not in src else IPv6)(bytes(layer))[ScapyTCP].chksum == want


def test_with_checksum_completes_a_partial_sum_and_keeps_a_right_one():
    pkt = udp_packet("198.18.0.2", "198.18.0.3", 1, 7, b"x" * 33)
    partial = pkt[:26] + b"\x12\x34" + pkt[28:]
    assert with_checksum(partial) == pkt and with_checksum(pkt) == pkt
    frag = bytearray(pkt)
    frag[6] |= 0x20  # MF: a fragment is left alone
    assert with_checksum(bytes(frag)) == bytes(frag)


@pytest.mark.parametrize("mode,version", [("transport", 4), ("tunnel", 4), ("transport", 6), ("tunnel", 6)])
def test_fit_is_the_longest_inner_packet_whose_esp_packet_is_the_mtu(mode, version):
    src, dst = ("198.18.0.2", "198.18.0.3") if version == 4 else ("2001:db8::2", "2001:db8::3")
    ek, _ = keymat("ENCR_AES_GCM_16", None)
    sa = SecurityAssociation(protocol="esp", spi=0x100, src=src, dst=dst, mode=mode, encryption="ENCR_AES_GCM_16",
                             encryption_key=ek[:20])
    n = fit(EspCodec(sa), mode, version)
    hdr = 20 if version == 4 else 40
    for size, longer in ((n, False), (n + 1, True)):
        out = Sender(sa).protect(udp_packet(src, dst, 1, 7, bytes(size - hdr - 8)))
        assert (len(out) > 1500) is longer and (longer or len(out) == 1500)
