"""NAT traversal of a case as its capture shows it (RFC 7296 s2.23, RFC 3948), judged on the segment of each end.

`expect_nat_traversal(pair, request, forced)` reads the capture so far and requires:
- each end's IKE_SA_INIT message carries NAT_DETECTION_SOURCE_IP and NAT_DETECTION_DESTINATION_IP, hashed over the
  addresses and ports it really sent from and to (on its own segment); an end forcing encapsulation may fake its
  source hash (that is how it makes the other end see a NAT);
- on the receiving end's segment the hashes mismatch exactly where the lab puts a NAT router between the ends (else
  the lab is broken, not the peer);
- where a NAT (or a faked hash) is seen, every IKE message after IKE_SA_INIT goes over UDP 4500 behind the non-ESP
  marker, the Child SA's ESP is UDP-encapsulated on port 4500 both ways and both ends report it encapsulated;
  where none is, IKE stays on port 500 and ESP is not encapsulated (RFC 7296 allows port 4500 anyway: a SHOULD).
`expect_keepalives(pair, request, end)`: an end behind a NAT sends NAT-keepalives from port 4500 while the SA is idle,
at its configured interval (RFC 3948 s2.3, a SHOULD). `expect_ike_on_4500(pair)`: a liveness check the built-in end sends
behind the non-ESP marker is answered as IKE, and the peer's kernel counts no ESP error for it (RFC 3948 s2.2).
`expect_new_mapping_followed(pair, request)`: after the NAT router in front of the built-in end rebinds
(harness.lab.rebind), the peer answers IKE where the request came from (RFC 7296 s2.11, MUST) and sends ESP and its own
IKE requests to the new address and port (s2.23, SHOULD: recorded NON-STRICT when not).
`expect_transport_udp_checksum(pair)`: a UDP datagram the peer sends through a transport-mode SA to the built-in end
behind the NAT reaches it with a checksum right for the addresses it arrives with (RFC 3948 s3.1.2).
NAT traversal is IPv4 only here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.errors import LabError, NoAnswer, PeerFault
from harness.esp.keepalive import LAB_INTERVAL
from harness.ike.message import IKE_SA_INIT
from harness.report.checks import should
from harness.tools.natt_wire import NattPacket, nat_detection, natt_packets
from harness.tools.pcapio import read_capture

RFC_NAT_D = "RFC 7296 s2.23 MUST"
RFC_ENCAP = "RFC 3948 s2.1 MUST"
# the kernel's counters of a packet taken as ESP and refused (/proc/net/xfrm_stat): none may count an IKE message
KEEPALIVE_WAIT = 10.0 * LAB_INTERVAL  # ten intervals: generous for three keepalives, short for an end that sends none
MAPPING_WAIT = 30.0  # the kernel reports a new mapping at the first ESP packet (XFRM_MSG_MAPPING); its daemon acts at once
ESP_ERRORS = ("XfrmInError", "XfrmInBufferError", "XfrmInHdrError", "XfrmInNoStates", "XfrmInStateProtoError",
              "XfrmInStateModeError", "XfrmInStateMismatch", "XfrmInStateInvalid")


@dataclass(frozen=True)
class NatVerdict:
    """What the capture showed: whether a NAT was seen (or faked), and the packets judged per kind."""

    nat: bool
    ike_after_init: int
    esp: dict[str, int]  # end name -> ESP packets it sent on its own segment


def segment_of(pair: Any, end: Any) -> str:
    """The segment an end sits on (where its own packets are judged)."""
    return pair.lab.node(end.node).interface().segment


def wire(pair: Any) -> dict[str, list[NattPacket]]:
    """The IKE, ESP and keepalive packets captured so far on each segment (the capture goes on)."""
    return {seg: natt_packets(read_capture(path)) for seg, path in pair.capture.flush().items()}


def translated(pair: Any, end: Any) -> bool:
    """True when the other end meets end at an address not its own: a NAT router between them."""
    other = pair.responder if end is pair.initiator else pair.initiator
    return pair.seen_address(end, other) != pair.address(end)


def _ike_spis(pair: Any) -> tuple[int, int]:
    """The case's IKE SA SPIs, from the first end that reports them."""
    for end in sorted(pair.ends, key=lambda e: not e.builtin):
        for sa in pair.ike_sas(end):
            if sa.spi_i and sa.spi_r:
                return sa.spi_i, sa.spi_r
    raise LabError(f"pair {pair.spec.id}: no end reports the IKE SA's SPIs")


def _init(packets: list[NattPacket], spi_i: bytes, spi_r: bytes, response: bool) -> NattPacket | None:
    """The last IKE_SA_INIT request (or the response) of the IKE SA on a segment."""
    found = [p for p in packets if p.ike and p.ike.exchange_type == IKE_SA_INIT and p.ike.spi_i == spi_i
             and p.ike.response == response and (not response or p.ike.spi_r == spi_r)]
    return found[-1] if found else None


def _check_init(pair: Any, packets: dict[str, list[NattPacket]], spis: tuple[bytes, bytes],
                forced: frozenset[str]) -> bool:
    """Each IKE_SA_INIT message's NAT-D hashes, on the sender's and the receiver's segment; True if either end sees
    a NAT (or a faked hash)."""
    seen = False
    for response, sender, receiver in ((False, pair.initiator, pair.responder), (True, pair.responder, pair.initiator)):
        what = f"{sender.name}'s IKE_SA_INIT {'response' if response else 'request'}"
        sent = _init(packets[segment_of(pair, sender)], *spis, response)
        got = _init(packets[segment_of(pair, receiver)], *spis, response)
        if sent is None or got is None:
            raise LabError(f"pair {pair.spec.id}: {what} is not in the capture of both ends' segments")
        mine = nat_detection(sent)
        if mine.source_matches is None or mine.destination_matches is None:
            raise PeerFault(f"{what} lacks NAT_DETECTION_SOURCE_IP or NAT_DETECTION_DESTINATION_IP: the other end "
                            f"cannot detect a NAT between them", RFC_NAT_D)
        if not mine.destination_matches:
            raise PeerFault(f"{what}: NAT_DETECTION_DESTINATION_IP is not the hash of {sent.dst}:{sent.dport}, where "
                            f"it sent the message (frame {sent.index} on its segment)", RFC_NAT_D)
        if not mine.source_matches and sender.name not in forced:
            raise PeerFault(f"{what}: NAT_DETECTION_SOURCE_IP is not the hash of {sent.src}:{sent.sport}, where it "
                            f"sent the message from (frame {sent.index} on its segment)", RFC_NAT_D)
        theirs = nat_detection(got)
        if theirs.destination_matches == translated(pair, receiver) or \
                (sender.name not in forced and theirs.source_matches == translated(pair, sender)):
            raise LabError(f"pair {pair.spec.id}: {what} as {receiver.name} received it ({got.src}:{got.sport} -> "
                           f"{got.dst}:{got.dport}) does not show the NAT of topology {pair.lab.topology.name!r}")
        seen = seen or not (theirs.source_matches and theirs.destination_matches)
    return seen


def _sender(pair: Any, p: NattPacket) -> Any:
    """The end that sent an IKE message: the original initiator's messages carry the I flag (RFC 7296 s3.1)."""
    return pair.initiator if p.ike.initiator else pair.responder


def expect_nat_traversal(pair: Any, request: Any, forced: frozenset[str] = frozenset()) -> NatVerdict:
    """The case's NAT detection, ports and UDP encapsulation as captured so far (module doc); forced: the names of
    the ends whose Connection forces UDP encapsulation. PeerFault naming the end, the frame and the requirement."""
    packets = wire(pair)
    spi_i, spi_r = (s.to_bytes(8, "big") for s in _ike_spis(pair))
    nat = _check_init(pair, packets, (spi_i, spi_r), forced)
    after = 0
    for end in pair.ends:
        for p in packets[segment_of(pair, end)]:
            if p.kind != "ike" or p.ike.spi_i != spi_i or p.ike.exchange_type == IKE_SA_INIT or _sender(pair, p) is not end:
                continue
            after += 1
            where = f"{end.name}'s {p.ike.exchange_name} {'response' if p.ike.response else 'request'} " \
                    f"{p.ike.message_id} (frame {p.index}, {p.src}:{p.sport} -> {p.dst}:{p.dport})"
            if nat and not (p.udp and p.sport == 4500):
                raise PeerFault(f"{where}: a NAT was detected in IKE_SA_INIT, yet this message is not on UDP port "
                                f"4500 behind the non-ESP marker", "RFC 7296 s2.23 MUST")
            if not nat:
                should(request, not p.udp, "RFC 7296 s2.23 SHOULD", f"{where}: on port 4500 with no NAT detected")
    if not after:
        raise LabError(f"pair {pair.spec.id}: no IKE message after IKE_SA_INIT in the capture")
    esp = {}
    for end in pair.ends:
        c = pair.child(end)
        mine = [p for p in packets[segment_of(pair, end)] if p.kind == "esp" and p.spi == c.spi_out]
        if not mine:
            raise PeerFault(f"{end.name} sent no ESP packet on its outbound SA 0x{c.spi_out:08x} in the capture",
                            pair.requirement)
        esp[end.name] = len(mine)
        for p in mine:
            where = f"{end.name}'s ESP 0x{p.spi:08x} (frame {p.index}, {p.src}:{p.sport} -> {p.dst}:{p.dport})"
            if nat and not (p.udp and p.sport == 4500):
                raise PeerFault(f"{where}: not UDP-encapsulated from port 4500 though a NAT was detected", RFC_ENCAP)
            if not nat:
                should(request, not p.udp, "RFC 7296 s2.23 SHOULD", f"{where}: UDP-encapsulated with no NAT detected")
        if nat and not c.encap:
            raise PeerFault(f"{end.name} reports its Child SA 0x{c.spi_in:08x} not UDP-encapsulated though a NAT was "
                            f"detected", RFC_ENCAP)
        if not nat:
            should(request, not c.encap, "RFC 7296 s2.23 SHOULD", f"{end.name} reports its Child SA UDP-encapsulated "
                   f"with no NAT detected")
    return NatVerdict(nat, after, esp)


def keepalives(pair: Any, end: Any) -> list[NattPacket]:
    """The NAT-keepalives end sent so far, as its own segment saw them (RFC 3948 s2.3)."""
    own = pair.address(end)
    return [p for p in wire(pair)[segment_of(pair, end)] if p.kind == "keepalive" and p.src == own]


def expect_keepalives(pair: Any, request: Any, end: Any, count: int = 3) -> list[float]:
    """end (behind a NAT) sends count NAT-keepalives from port 4500 to the other end's port 4500 while the SA is idle,
    LAB_INTERVAL apart (median within half to twice it): a SHOULD (RFC 3948 s2.3), recorded NON-STRICT when not met.
    The gaps in seconds."""
    got: list[NattPacket] = []

    def enough() -> bool:
        got[:] = keepalives(pair, end)
        return len(got) >= count

    try:
        pair.wait(enough, f"{end.name} sends {count} NAT-keepalives while idle behind a NAT", timeout=KEEPALIVE_WAIT,
                  interval=0.5)
    except NoAnswer:
        should(request, False, "RFC 3948 s2.3 SHOULD", f"{end.name} sent {len(got)} NAT-keepalive(s) in "
               f"{KEEPALIVE_WAIT:.0f} s idle behind a NAT, configured every {LAB_INTERVAL} s")
        return []
    for p in got:
        if not (p.sport == 4500 and p.dport == 4500):
            raise PeerFault(f"{end.name}'s NAT-keepalive (frame {p.index}) went {p.src}:{p.sport} -> {p.dst}:{p.dport}, "
                            f"not between the ports of UDP encapsulation", "RFC 3948 s2.3 MUST")
    gaps = sorted((b.ts_ns - a.ts_ns) / 1e9 for a, b in zip(got, got[1:]))
    median = gaps[len(gaps) // 2]
    should(request, LAB_INTERVAL / 2 <= median <= 2 * LAB_INTERVAL, "RFC 3948 s2.3 SHOULD",
           f"{end.name} sent NAT-keepalives {median:.1f} s apart, configured every {LAB_INTERVAL} s")
    return gaps


def expect_ike_on_4500(pair: Any) -> dict[str, int]:
    """A liveness check (RFC 7296 s2.4) the built-in end sends on port 4500 behind the non-ESP marker (four zero octets
    where ESP has its SPI) is answered, and the peer's kernel counts no ESP error for it (RFC 3948 s2.2); what its
    counters counted (a policy count such as XfrmInTmplMismatch is not an ESP error: the message reached IKE)."""
    from harness.ike.events import Informational

    end = pair.builtin
    before, mark = pair.counters(), len(end.events)
    end.request(lambda ep: ep.liveness(ep.established()[0]))
    pair.wait(lambda: any(isinstance(e, Informational) and e.asked_by_us for e in end.events[mark:]),
              f"{pair.peer.name} answers a liveness check sent on port 4500 behind the non-ESP marker")
    rose = pair.counters().rose(before, pair.inbound())
    errors = {k: v for k, v in rose.items() if k in ESP_ERRORS}
    if errors:
        raise PeerFault(f"{pair.peer.name}'s kernel counted {errors} for an IKE message behind the non-ESP marker: "
                        f"a zero SPI on port 4500 is IKE, not ESP", "RFC 3948 s2.2 MUST")
    return rose


def _answered_liveness(pair: Any, what: str, requirement: str) -> None:
    """The built-in end's liveness check is answered (waiting until it is, or the built-in end gives it up after its
    retransmissions); PeerFault naming requirement otherwise."""
    from harness.ike.events import Informational, PeerDead

    end = pair.builtin
    mark = len(end.events)
    end.request(lambda ep: ep.liveness(ep.established()[0]))
    done = pair.wait(lambda: next((e for e in end.events[mark:] if isinstance(e, (PeerDead, Informational))), None), what)
    if isinstance(done, PeerDead):
        raise PeerFault(f"{what}: no answer to the liveness check (Message ID {done.message_id}) after the built-in "
                        f"end's retransmissions", requirement)


def _kernel_destination(pair: Any) -> tuple[str, int] | None:
    """Where the peer kernel's outbound ESP-in-UDP SA of the case's Child SA sends: (address, port)."""
    st = pair.counters().sas.get(("esp", pair.child(pair.peer).spi_out))
    return (st.dst, int(st.encap["dport"])) if st is not None and st.encap else None


def expect_new_mapping_followed(pair: Any, request: Any, ports: tuple[int, int]) -> dict[str, Any]:
    """Within a rebind of the router in front of the built-in end to ports (module doc): the peer answers a liveness
    check at the new mapping (RFC 7296 s2.11 MUST); after one echo request from it, the peer's kernel SA sends to the
    new address and port, traffic flows both ways, and the peer's own Delete request reaches the built-in end (s2.23
    SHOULD). What the peer did: {"mapped_to": "addr:port", "esp": followed, "ike": followed}."""
    peer, me = pair.peer, pair.builtin_end
    seg = segment_of(pair, peer)
    _answered_liveness(pair, f"{peer.name} answers a liveness check from the NAT's new mapping, where it came from "
                             f"(RFC 7296 s2.11)", "RFC 7296 s2.11 MUST")
    mine = [p for p in wire(pair)[seg] if p.kind == "ike" and p.ike and p.ike.initiator and not p.ike.response]
    if not mine or not ports[0] <= mine[-1].sport <= ports[1]:
        raise LabError(f"pair {pair.spec.id}: the router did not rebind: the liveness check reached {peer.name} from "
                       f"{mine[-1].src}:{mine[-1].sport}" if mine else f"pair {pair.spec.id}: no liveness check on {seg}")
    new, since = (mine[-1].src, mine[-1].sport), mine[-1].ts_ns
    out: dict[str, Any] = {"mapped_to": f"{new[0]}:{new[1]}"}
    me.adapter.ping(pair.address(peer), 1, timeout=2.0)  # ESP from the new mapping: its answer may still take the old
    try:
        pair.wait(lambda: _kernel_destination(pair) == new, f"{peer.name}'s kernel SA sends to {new[0]}:{new[1]}",
                  timeout=MAPPING_WAIT)
        out["esp"] = True
    except NoAnswer:
        out["esp"] = False
        should(request, False, "RFC 7296 s2.23 SHOULD", f"{peer.name}'s kernel SA still sends ESP to "
               f"{_kernel_destination(pair)}, not to the new mapping {new[0]}:{new[1]}")
    if out["esp"]:
        pair.traffic(count=2)
        sent = [p for p in wire(pair)[seg] if p.kind == "esp" and p.src == pair.address(peer) and p.ts_ns > since]
        if not sent or (sent[-1].dst, sent[-1].dport) != new:
            raise PeerFault(f"{peer.name}'s kernel SA names {new[0]}:{new[1]}, yet its last ESP went to "
                            f"{(sent[-1].dst, sent[-1].dport) if sent else 'nowhere'}", pair.requirement)
    try:
        pair.terminate(by="initiator" if peer is pair.initiator else "responder")
        out["ike"] = True
    except PeerFault as e:
        out["ike"] = False
        should(request, False, "RFC 7296 s2.23 SHOULD", f"{peer.name}'s Delete request did not reach the built-in "
               f"end at the new mapping {new[0]}:{new[1]}: {e}")
    return out


def expect_transport_udp_checksum(pair: Any, port: int = 40001) -> bytes:
    """The peer sends one UDP datagram (bash's /dev/udp) through the transport-mode Child SA to the built-in end at the
    address it meets it at; the built-in end must deliver it with the UDP checksum right for its own addresses (RFC 3948
    s3.1.2: the peer summed it for the NAT's). The packet delivered; LabError if the built-in end's fix failed."""
    from harness.esp.natt_checksum import transport_checksum

    peer, me = pair.peer, pair.builtin_end
    payload = "ipsec-interop RFC 3948 s3.1.2"
    peer.runtime_node.exec(["bash", "-c", f"printf '{payload}' > /dev/udp/{pair.seen_address(me, peer)}/{port}"],
                           timeout=15)
    got = pair.wait(lambda: [p for p in pair.builtin.udp_received() if p.endswith(payload.encode())],
                    f"{peer.name}'s UDP datagram through the transport-mode Child SA")
    packet = got[-1]
    ihl = (packet[0] & 0x0F) * 4
    if int.from_bytes(packet[ihl + 6:ihl + 8], "big") not in (0, transport_checksum(packet)):
        raise LabError(f"the built-in end delivered the UDP datagram from {peer.name} with checksum "
                       f"0x{packet[ihl + 6:ihl + 8].hex()}, not 0x{transport_checksum(packet):04x} (RFC 3948 s3.1.2)")
    return packet
