"""harness.tools.natt_wire: IKE, ESP and NAT-keepalives of a capture, and IKE_SA_INIT's NAT-D hashes as captured."""
from __future__ import annotations

import struct

import pytest

from harness.errors import ParseError
from harness.ike.auth import Identity
from harness.ike.config import Bugs, IkeConfig
from harness.ike.endpoint import IkeEndpoint
from harness.ike.loopback import FakeClock, seeded_rng
from harness.ike.proposals import parse_proposals
from harness.lab.ping import ipv4_packet
from harness.tools.natt_wire import nat_detection, natt_packets
from harness.tools.pcapio import LINKTYPE_RAW, CapturedPacket

A, B, NAT = "198.18.0.2", "198.18.1.3", "198.18.1.1"


def udp(src: str, sport: int, dst: str, dport: int, payload: bytes) -> bytes:
    return ipv4_packet(src, dst, 17, struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload)


def captured(*ips: bytes) -> list[CapturedPacket]:
    return [CapturedPacket(i + 1, i, LINKTYPE_RAW, ip) for i, ip in enumerate(ips)]


def init_request(bugs: Bugs | None = None) -> bytes:
    """The IKE_SA_INIT request an initiator at A:500 sends to B:500."""
    cfg = IkeConfig(local_id=Identity.of("moon.example"), psk=b"k" * 16, bugs=bugs or Bugs(),
                    ike_proposals=parse_proposals("aes128gcm16-prfsha256-ecp256", "ike"),
                    child_proposals=parse_proposals("aes128gcm16", "esp"))
    (d,) = IkeEndpoint(cfg, (A, 500), FakeClock(), seeded_rng(1)).initiate((B, 500))
    return d.data


def test_kinds_ports_and_encapsulation_are_read():
    esp = struct.pack("!II", 0x1234, 1) + bytes(24)
    got = natt_packets(captured(udp(A, 500, B, 500, init_request()), udp(A, 4500, B, 4500, bytes(4) + init_request()),
                                udp(A, 4500, B, 4500, esp), ipv4_packet(A, B, 50, esp), udp(A, 4500, B, 4500, b"\xff"),
                                udp(A, 53, B, 53, b"dns")))
    assert [(p.kind, p.udp, p.sport) for p in got] == [("ike", False, 500), ("ike", True, 4500), ("esp", True, 4500),
                                                        ("esp", False, 0), ("keepalive", True, 4500)]
    assert got[2].spi == got[3].spi == 0x1234 and got[0].ike.exchange_type == 34 and got[1].on_natt_port


@pytest.mark.rfc(7296, "2.23", "MUST")
def test_nat_detection_as_sent_and_across_a_nat():
    msg = init_request()
    sent, = natt_packets(captured(udp(A, 500, B, 500, msg)))
    assert nat_detection(sent).source_matches and nat_detection(sent).destination_matches
    across, = natt_packets(captured(udp(NAT, 500, B, 500, msg)))  # the NAT rewrote the source
    assert not nat_detection(across).source_matches and nat_detection(across).destination_matches
    forwarded, = natt_packets(captured(udp(A, 500, "198.18.2.3", 500, msg)))  # a port forward rewrote the destination
    assert nat_detection(forwarded).source_matches and not nat_detection(forwarded).destination_matches


def test_faked_and_missing_hashes():
    faked, = natt_packets(captured(udp(A, 500, B, 500, init_request(Bugs(fake_natd=True)))))
    assert nat_detection(faked).source_matches is False
    none, = natt_packets(captured(udp(A, 500, B, 500, init_request(Bugs(skip_natd=True)))))
    assert nat_detection(none).source_matches is None and nat_detection(none).destination_matches is None


def test_nat_detection_needs_ike_sa_init():
    esp, = natt_packets(captured(ipv4_packet(A, B, 50, bytes(32))))
    with pytest.raises(ParseError):
        nat_detection(esp)
