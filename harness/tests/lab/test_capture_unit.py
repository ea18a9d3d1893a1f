"""Capture helpers without root: pcap records round-trip, SPIs found in ESP, AH and UDP-encapsulated frames."""
from __future__ import annotations

import struct

import pytest

from harness.errors import LabError
from harness.lab.capture import ipsec_spi, pcap_header, pcap_record, read_pcap
from harness.lab.ping import ipv4_packet

ETH4 = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00"
ETH6 = b"\x02" * 6 + b"\x04" * 6 + b"\x86\xdd"
A, B = "198.18.0.2", "198.18.0.3"


def ipv6(next_header: int, payload: bytes) -> bytes:
    src, dst = bytes.fromhex("20010db8" + "00" * 11 + "02"), bytes.fromhex("20010db8" + "00" * 11 + "03")
    return struct.pack("!IHBB", 6 << 28, len(payload), next_header, 64) + src + dst + payload


def udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


@pytest.mark.parametrize("frame,spi", [
    (ETH4 + ipv4_packet(A, B, 50, bytes.fromhex("c0ffee01") + b"\0" * 20), 0xC0FFEE01),
    (ETH4 + ipv4_packet(A, B, 51, bytes.fromhex("3204 0000 00001234".replace(" ", "")) + b"\0" * 16), 0x1234),
    (ETH4 + ipv4_packet(A, B, 17, udp(4500, 4500, bytes.fromhex("0000abcd") + b"\0" * 20)), 0xABCD),
    (ETH4 + ipv4_packet(A, B, 17, udp(4500, 4500, b"\0\0\0\0" + b"\x11" * 28)), None),  # IKE behind the marker
    (ETH4 + ipv4_packet(A, B, 17, udp(4500, 4500, b"\xff")), None),  # NAT-keepalive
    (ETH4 + ipv4_packet(A, B, 17, udp(4500, 4500, b"\xff")) + b"\0" * 17, None),  # padded to 60 octets
    (ETH4 + ipv4_packet(A, B, 17, udp(500, 500, b"\x12" * 28)), None),  # IKE on 500
    (ETH4 + ipv4_packet(A, B, 1, b"\x08\0\0\0\0\1\0\1"), None),
    (ETH6 + ipv6(50, bytes.fromhex("00000102") + b"\0" * 20), 0x102),
    (b"\x02" * 6 + b"\x04" * 6 + b"\x08\x06" + b"\0" * 28, None),  # ARP
    (b"\x02" * 10, None),
], ids=["esp4", "ah4", "udp-esp", "udp-ike", "keepalive", "keepalive-padded", "ike500", "icmp", "esp6", "arp", "runt"])
def test_ipsec_spi_of_frames(frame, spi):
    assert ipsec_spi(frame) == spi


def test_pcap_records_round_trip(tmp_path):
    path = tmp_path / "x.pcap"
    frames = [(1_700_000_000_123_456_789, b"\x01" * 60), (1_700_000_001_000_000_001, b"\x02" * 1514)]
    path.write_bytes(pcap_header() + b"".join(pcap_record(t, f) for t, f in frames))
    assert read_pcap(path) == frames


def test_read_pcap_refuses_what_is_not_a_pcap(tmp_path):
    (tmp_path / "short").write_bytes(b"\xd4\xc3\xb2")
    (tmp_path / "magic").write_bytes(b"\0" * 24)
    with pytest.raises(LabError, match="only 3 bytes"):
        read_pcap(tmp_path / "short")
    with pytest.raises(LabError, match="magic 0x00000000"):
        read_pcap(tmp_path / "magic")
