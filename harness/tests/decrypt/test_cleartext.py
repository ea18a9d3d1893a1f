"""The clear-text check of the wire check (harness.tools.cleartext): what a Child SA's selectors cover must not cross
in clear between its IKE_AUTH (or CREATE_CHILD_SA) response and its Delete; IKE, ESP/AH, ICMP errors, IPv6 ND and
packets outside the selectors may."""
from __future__ import annotations

import struct
from pathlib import Path

from harness.esp.ip import addr_bytes, ipv6_header
from harness.ike.ts import TrafficSelector
from harness.keys import parse_keys
from harness.lab.ping import echo_packet, ipv4_packet
from harness.tools.capture_decrypt import PacketResult
from harness.tools.ike_capture import loopback_capture
from harness.tools.cleartext import cleartext_problems, protected_frames
from harness.tools.ike_decrypt import IkeResult
from harness.tools.pcapio import LINKTYPE_RAW, CapturedPacket, write_pcap
from harness.tools.wire_check import check_wire

A, B, C = "198.18.0.2", "198.18.0.3", "198.18.0.9"
HOSTS = ((TrafficSelector.of(f"{A}/32"),), (TrafficSelector.of(f"{B}/32"),))
SPI_I, SPI_R = bytes(range(1, 9)), bytes(range(9, 17))


def _ike(exchange: str, mid: int, response: bool, payloads: list[str], status: str = "decrypted") -> IkeResult:
    return IkeResult(0, status, SPI_I, SPI_R, exchange, mid, initiator=not response, response=response,
                     payloads=payloads)


def _udp(src: str, dst: str, sport: int, dport: int) -> bytes:
    return ipv4_packet(src, dst, 17, struct.pack("!HHHH", sport, dport, 12, 0) + b"data")


def _segment(items: list[bytes | IkeResult]) -> tuple[list[CapturedPacket], list[PacketResult]]:
    """A segment's capture: an IkeResult stands for an IKE message (its frame a UDP 500 datagram), bytes are IP."""
    packets, results = [], []
    for i, item in enumerate(items, 1):
        data = _udp(A, B, 500, 500) if isinstance(item, IkeResult) else item
        packets.append(CapturedPacket(i, i * 1000, LINKTYPE_RAW, data))
        res = PacketResult(i, i * 1000, "not_ipsec")
        if isinstance(item, IkeResult):
            item.index, res.ike = i, item
        results.append(res)
    return packets, results


AUTH = _ike("IKE_AUTH", 1, True, ["IDr", "AUTH", "SA", "TSi", "TSr"])
REPLY = echo_packet(B, A, 7, 1, reply=True)


def _problems(items: list[bytes | IkeResult], selectors=(HOSTS,)) -> list[str]:
    packets, results = _segment(items)
    return cleartext_problems("net (net.pcap)", packets, results, selectors)


def test_a_clear_echo_reply_after_the_ike_auth_response_is_a_problem_and_before_it_is_not():
    problems = _problems([REPLY, AUTH, REPLY])
    assert len(problems) == 1 and "frame 3: ICMP 198.18.0.3 -> 198.18.0.2 type 0 in clear" in problems[0]
    assert "RFC 4301 s5" in problems[0]


def test_what_may_pass_in_clear_is_never_a_problem():
    esp = ipv4_packet(B, A, 50, bytes(32))
    ike = _udp(B, A, 4500, 4500)
    unreachable = ipv4_packet(B, A, 1, bytes((3, 3, 0, 0)) + bytes(28))
    other = echo_packet(B, C, 7, 1, reply=True)  # outside the selectors
    assert _problems([AUTH, esp, ike, unreachable, other]) == []


def test_ipv6_neighbor_discovery_passes_in_clear_and_an_ipv6_echo_reply_does_not():
    a6, b6 = "2001:db8::2", "2001:db8::3"
    v6 = ((TrafficSelector.of(f"{a6}/128"),), (TrafficSelector.of(f"{b6}/128"),))
    solicit = ipv6_header(addr_bytes(b6), addr_bytes(a6), 58, 24) + bytes((135,)) + bytes(23)
    reply = ipv6_header(addr_bytes(b6), addr_bytes(a6), 58, 8) + bytes((129,)) + bytes(7)
    problems = _problems([AUTH, solicit, reply], (v6,))
    assert len(problems) == 1 and "frame 3: ICMPv6 2001:db8::3 -> 2001:db8::2 type 129" in problems[0]


def test_selectors_with_a_protocol_and_port_judge_only_that_traffic():
    udp = ((TrafficSelector.of(f"{A}/32[udp/40001]"),), (TrafficSelector.of(f"{B}/32[udp]"),))
    assert _problems([AUTH, REPLY, _udp(B, A, 5000, 40002)], (udp,)) == []
    assert len(_problems([AUTH, _udp(B, A, 5000, 40001)], (udp,))) == 1


def test_the_span_closes_at_a_delete_but_not_at_the_delete_that_ends_a_rekey():
    rekey = _ike("CREATE_CHILD_SA", 2, False, ["N(REKEY_SA)", "SA", "Nonce", "TSi", "TSr"])
    rekeyed = _ike("CREATE_CHILD_SA", 2, True, ["SA", "Nonce", "TSi", "TSr"])
    old = _ike("INFORMATIONAL", 3, False, ["D"])
    last = _ike("INFORMATIONAL", 4, False, ["D"])
    problems = _problems([AUTH, rekey, rekeyed, old, REPLY, last, REPLY])
    assert len(problems) == 1 and "frame 5:" in problems[0]


def test_an_ike_auth_response_without_a_child_sa_opens_nothing_and_undecrypted_headers_are_judged_alone():
    childless = _ike("IKE_AUTH", 1, True, ["IDr", "AUTH"])
    assert _problems([childless, REPLY]) == []
    blind = _ike("IKE_AUTH", 1, True, ["SK"], status="unknown_spi")
    dpd = _ike("INFORMATIONAL", 2, False, ["SK"], status="unknown_spi")
    assert [p.split(":")[0] for p in _problems([blind, REPLY, dpd, REPLY])] == ["net (net.pcap) frame 2"]
    assert protected_frames(_segment([blind, REPLY, dpd, REPLY])[1]) == [(1, 3)]


def test_a_segment_without_ike_is_not_judged():
    assert _problems([REPLY, REPLY]) == []


def test_check_wire_reports_a_clear_reply_between_the_ends_of_a_real_exchange(tmp_path: Path):
    cap = loopback_capture()  # IKE_AUTH, ESP, a Child SA rekey, ESP, a Child SA Delete; then a second IKE SA
    keys = parse_keys(cap.keys, "loopback")
    ends = ((TrafficSelector.of("198.18.0.1/32"),), (TrafficSelector.of("198.18.0.2/32"),))
    reply = echo_packet("198.18.0.2", "198.18.0.1", 7, 1, reply=True)
    auth, deleted = cap.ike[3][0], cap.ike[9][0]  # frame numbers of the IKE_AUTH response, the last Delete's response
    # one reply inside the Child SA's life (a rekey's Delete does not end it), one after its Delete
    frames = [*cap.frames[:auth], reply, *cap.frames[auth:deleted], reply, *cap.frames[deleted:]]

    def problems(frames: list[bytes], selectors) -> list[str]:
        pcap = tmp_path / "net.pcap"
        write_pcap(pcap, [(n * 1000, f) for n, f in enumerate(frames, 1)], LINKTYPE_RAW)
        return check_wire({"net": pcap}, keys, selectors=selectors).problems

    assert problems(cap.frames, [ends]) == []
    found = problems(frames, [ends])
    assert len(found) == 1 and found[0].startswith(f"net (net.pcap) frame {auth + 1}: ICMP 198.18.0.2 -> 198.18.0.1")
    assert problems(frames, []) == []
