"""harness.esp.natt_checksum: a transport-mode TCP/UDP checksum made right again after a NAT (RFC 3948 s3.1.2)."""
from __future__ import annotations

import struct

import pytest

from harness.errors import ParseError
from harness.esp.natt_checksum import fix_transport_checksum, transport_checksum
from harness.lab.ping import echo_packet, ipv4_packet

PEER, NAT, INSIDE = "198.18.1.3", "198.18.1.1", "198.18.0.2"


def udp(src: str, dst: str, payload: bytes, zero: bool = False) -> bytes:
    """A UDP packet with its checksum right for (src, dst), or none (zero)."""
    seg = struct.pack("!HHHH", 40001, 40002, 8 + len(payload), 0) + payload
    pkt = ipv4_packet(src, dst, 17, seg)
    return pkt if zero else pkt[:26] + struct.pack("!H", transport_checksum(pkt)) + pkt[28:]


def tcp(src: str, dst: str) -> bytes:
    seg = struct.pack("!HHIIBBHHH", 40001, 80, 1, 0, 5 << 4, 0x02, 65535, 0, 0) + b"data"
    pkt = ipv4_packet(src, dst, 6, seg)
    return pkt[:36] + struct.pack("!H", transport_checksum(pkt)) + pkt[38:]


def readdressed(pkt: bytes, dst: str) -> bytes:
    """pkt as transport mode rebuilds it behind the NAT: the destination the NAT put in the outer header."""
    return ipv4_packet(PEER, dst, pkt[9], pkt[20:])


@pytest.mark.rfc(3948, "3.1.2", "MUST")
@pytest.mark.parametrize("make,at", [(lambda: udp(PEER, NAT, b"hello"), 26), (lambda: tcp(PEER, NAT), 36)])
def test_checksum_summed_for_the_nat_address_is_made_right_for_the_inside_address(make, at):
    sent = make()  # the peer summed its checksum for the NAT's public address
    got = readdressed(sent, INSIDE)
    assert struct.unpack_from("!H", got, at)[0] != transport_checksum(got)  # wrong after the NAT
    fixed = fix_transport_checksum(got)
    assert struct.unpack_from("!H", fixed, at)[0] == transport_checksum(fixed)
    assert fixed[:at] == got[:at] and fixed[at + 2:] == got[at + 2:]  # only the checksum field changed


def test_zero_udp_checksum_icmp_and_right_checksums_stay():
    none = readdressed(udp(PEER, NAT, b"x", zero=True), INSIDE)
    assert fix_transport_checksum(none) == none
    icmp = echo_packet(PEER, INSIDE, 1, 1)
    assert fix_transport_checksum(icmp) == icmp
    right = udp(PEER, INSIDE, b"already right")
    assert fix_transport_checksum(right) == right


def test_truncated_header_is_a_parse_error():
    with pytest.raises(ParseError):
        transport_checksum(ipv4_packet(PEER, INSIDE, 6, b"\0" * 10))


@pytest.mark.rfc(3948, "3.1.2", "MUST")
def test_receiver_of_udp_encapsulated_transport_mode_fixes_the_checksum():
    from harness.esp import Receiver, SecurityAssociation, Sender

    key = bytes(range(20))
    tx = SecurityAssociation("esp", 0x1001, PEER, NAT, "transport", "ENCR_AES_GCM_16", key, udp_encap=(4500, 4500))
    rx = SecurityAssociation("esp", 0x1001, PEER, INSIDE, "transport", "ENCR_AES_GCM_16", key, udp_encap=(4500, 4500))
    outer = Sender(tx).protect(udp(PEER, NAT, b"through the NAT"))
    natted = ipv4_packet(PEER, INSIDE, 17, outer[20:])  # the NAT rewrote the destination (outer UDP checksum is zero)
    inner = Receiver(rx).unprotect(natted).inner
    assert inner[16:20] == bytes([198, 18, 0, 2]) and struct.unpack_from("!H", inner, 26)[0] == transport_checksum(inner)
