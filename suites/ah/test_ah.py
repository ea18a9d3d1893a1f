"""AH (RFC 4302) against each peer's kernel: every integrity algorithm, both modes, IPv4 and IPv6, traffic both
ways; the ICV's alignment (s2.6, s3.3.3.2.1); and a packet changed in flight after the ICV was computed: a change
to a field s3.3.3.1 calls mutable (zeroed for the ICV) must be tolerated, a change to an immutable one dropped and
counted by the kernel (the inbound SA's failed counter and XfrmInStateProtoError, as for a wrong ICV); and a
replayed AH packet dropped (s3.4.3).

Rows of algorithms.json run between the built-in end and each peer (the data plane is the peer's kernel: one IKE
role suffices, but one IPv6 row also has the peer initiate, to the built-in end as IKE responder over IPv6); traffic is judged by both ends' SA counters and the wire check, crafted packets by the peer's
counters and its echo replies (harness/cases/dataplane.py).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.cases.dataplane import protect_with
from harness.cases.table import table_params
from harness.crypto import integ
from harness.errors import LabError, PeerFault
from harness.esp import Faults
from harness.esp.headers import (MUTABLE_OPTION, ah_with_reserved, ipv4_with, ipv4_with_options, ipv6_with,
                                 option_data_at, options_header, with_extensions)
from harness.esp.ip import DEST_OPTS, HOP_BY_HOP
from harness.report.checks import should

pytestmark = [pytest.mark.lab, pytest.mark.root]
TABLE = Path(__file__).with_name("algorithms.json")
EXPERIMENT = 0x1E  # RFC 4727 s5.1.2: an experimental option type a node skips when unknown (action 00)
ICV_FAILED = ("XfrmInStateProtoError", "failed")  # what the peer kernels count for an ICV that does not verify
RA = bytes((0x94, 4, 0, 0))  # IPv4 Router Alert (RFC 2113): immutable (RFC 4302 Appendix A.1)
RR = bytes((7, 7, 4)) + bytes(4)  # IPv4 Record Route with one empty slot: mutable (zeroed for the ICV)
RA_AT, RR_AT = 20, 24  # where they sit in the IPv4 header


def _version(row) -> int:
    return 6 if row.id.endswith("-ipv6") else 4


def numbered(inner: bytes) -> bytes:
    """inner (IPv4) with an Identification: the tester's kernel gives a packet without DF and with Identification 0
    one of its own (IP_HDRINCL), after AH's ICV covered it."""
    return ipv4_with(inner, ident=0x1234)


@pytest.mark.parametrize("row", table_params(TABLE))
def test_ah_carries_traffic_both_ways(pair, row, record_property):
    """The Child SA of the row's algorithm and mode carries echo requests both ways; the peer's AH pads the ICV to
    32 bits over IPv4 and 64 over IPv6 and no more (s2.6; Linux pads to 64 bits over IPv4 unless its state has
    `align4`: the flags are recorded); whether it takes an IPv4 AH padded to 64 bits is recorded too."""
    v = _version(row)
    pair.expect(row, pair.from_row(row, v))
    pair.traffic(count=3)
    child = pair.child(pair.peer)
    sas = pair.counters().sas
    if not {("ah", child.spi_in), ("ah", child.spi_out)} <= set(sas):
        raise LabError(f"{pair.peer.name}'s kernel shows no AH state 0x{child.spi_in:08x}/0x{child.spi_out:08x} "
                       f"(it holds {sorted(sas)})")
    flags = {d: sas[("ah", spi)].flags for d, spi in (("in", child.spi_in), ("out", child.spi_out))}
    esn = any(p.endswith("-esn") for p in row.connection["child_proposals"])
    if esn and not all("esn" in f for f in flags.values()):
        raise PeerFault(f"{pair.peer.name} agreed to ESN but its kernel states lack the esn flag ({flags})",
                        "RFC 4302 s2.5.1 MUST")
    record_property("peer_sa_flags", ", ".join(f"{d}: {' '.join(f) or '-'}" for d, f in flags.items()))
    algorithm = integ(next(k.integrity for k in pair.builtin.sa_keys() if k.spi == child.spi_in))
    fixed = 12 + algorithm.iv_size + algorithm.icv_size  # AH's fixed part, IV (GMAC) and ICV: octets before padding
    aligned = fixed + -fixed % (4 if v == 4 else 8)
    sent = {ah for (_, ah) in pair.builtin.ah_shapes(child.spi_out)}
    record_property("peer_ah_octets", ", ".join(map(str, sorted(sent))))
    if sent != {aligned}:
        raise PeerFault(f"{pair.peer.name} sent AH of {sorted(sent)} octets with {algorithm.name} over IPv{v}: "
                        f"{aligned} is the ICV padded to {32 if v == 4 else 64} bits and no more (its kernel "
                        f"states' flags: {flags})", "RFC 4302 s2.6 MUST")
    if v == 4 and fixed % 8:  # more padding than s2.6 lets a sender insert (Linux's without align4): evidence only
        took, rose = _taken(pair, lambda tx, inner: tx.protect(inner, Faults(padding=bytes(-fixed % 8))),
                            "an AH padded to 64 bits")
        record_property("peer_takes_ah_padded_to_64_bits", "yes" if took else f"no, dropped: {rose}")
    pair.terminate()


@pytest.mark.ends("builtin>peer")
@pytest.mark.rfc(4302, "3.3.3.1.1.1", "MUST")
def test_ipv4_header_fields_changed_in_flight(pair, request, record_property):
    """IPv4 (transport, HMAC-SHA2-256): TOS (DSCP and ECN), the DF flag, TTL and so the header checksum are
    mutable and changed in flight must be tolerated; the source address and the identification are immutable and
    a packet with either changed after the ICV was computed must be dropped and counted, as one with a wrong ICV.
    Options (s3.3.3.1.1.2, Appendix A.1): Router Alert is in the ICV, Record Route zeroed for it, so a packet
    with both verifies as sent and with Record Route filled in flight, and not with the Router Alert value changed
    (the peer's echo replies carry the Record Route back: the IP header sizes of the AH packets the built-in end
    verified are recorded). The Reserved field (s2.3: zero from a sender, in the ICV, ignored by a receiver) set to
    0xa55a and covered by a right ICV should be taken (NON-STRICT otherwise)."""
    pair.establish(pair.connection(protocol="ah", mode="transport", child_proposals=["sha256"]))

    def edited(**fields):
        return lambda tx, inner: ipv4_with(tx.protect(numbered(inner)), **fields)

    def with_options(edit):  # Router Alert (immutable) and Record Route (mutable) before AH
        return lambda tx, inner: ipv4_with(edit(tx.protect(ipv4_with_options(numbered(inner), RA + RR))))

    pair.expect_accepted([edited(ttl=3), edited(tos=0xBA), edited(df=False), edited(ttl=200, tos=0x03, df=False)],
                         "TTL, TOS (DSCP/ECN) or DF changed in flight (the header checksum fixed)")

    def recorded(p: bytes) -> bytes:  # a router on the path put its address into Record Route
        return p[:RR_AT + 2] + bytes((8,)) + bytes((198, 18, 0, 99)) + p[RR_AT + 7:]

    pair.expect_accepted([with_options(lambda p: p), with_options(recorded)],
                         "IPv4 options before AH: Router Alert, and Record Route filled in flight")
    spare = pair.selector("spare", pair.builtin_end).split("/")[0]
    alert = with_options(lambda p: p[:RA_AT + 3] + bytes((p[RA_AT + 3] ^ 1,)) + p[RA_AT + 4:])
    pair.expect_dropped([edited(src=spare), edited(ident=0x5AA5), alert, protect_with(Faults(corrupt_icv=True))],
                        ICV_FAILED, "the source address, the identification or the Router Alert value changed in "
                                    "flight, or a wrong ICV")
    inbound = pair.child(pair.builtin_end).spi_in
    record_property("peer_ah_headers", ", ".join(f"{n} with a {h}-octet IP header" for (h, _), n in
                                                 sorted(pair.builtin.ah_shapes(inbound).items())))
    took, rose = _taken(pair, lambda tx, inner: ah_with_reserved(tx.sa, tx.protect(inner), 0xA55A),
                        "an AH whose Reserved field is not zero")
    should(request, took, "RFC 4302 s2.3 SHOULD", f"{pair.peer.name} did not ignore a Reserved field of 0xa55a "
                                                  f"(in the ICV, which verifies): dropped, counted {rose}")
    pair.terminate()


@pytest.mark.ends("builtin>peer")
@pytest.mark.rfc(4302, "3.3.3.1.2", "MUST")
def test_ipv6_header_and_extension_headers_changed_in_flight(pair):
    """IPv6 (transport, HMAC-SHA2-256), each packet with a Hop-by-Hop and a Destination Options header before AH,
    each holding an option whose data may change en route (type bit 0x20) and one whose data may not: the packet
    as sent verifies at the peer; Traffic Class, Flow Label, Hop Limit and the data of the changeable options are
    mutable (s3.3.3.1.2.1, s3.3.3.1.2.2) and changed in flight must be tolerated; the source address and the
    data of the other options are covered by the ICV, and a change to either must be dropped and counted."""
    pair.establish(pair.connection(version=6, protocol="ah", mode="transport", child_proposals=["sha256"]))
    mutable = EXPERIMENT | MUTABLE_OPTION
    ext = [(HOP_BY_HOP, options_header([(EXPERIMENT, b"\x11" * 4), (mutable, b"\x22" * 4)])),
           (DEST_OPTS, options_header([(EXPERIMENT, b"\x33" * 2), (mutable, b"\x44" * 2)]))]

    def edited(edit):
        return lambda tx, inner: edit(tx.protect(with_extensions(inner, ext)))

    def option_changed(header: int, option: int):
        def edit(p: bytes) -> bytes:
            at, out = option_data_at(p, header, option), bytearray(p)
            out[at] = bytes(b ^ 0xFF for b in p[at])
            return bytes(out)
        return edit

    pair.expect_accepted([edited(lambda p: p), edited(lambda p: ipv6_with(p, hop_limit=2)),
                          edited(lambda p: ipv6_with(p, tclass=0xBA)), edited(lambda p: ipv6_with(p, flow=0x5A5A5)),
                          edited(option_changed(0, mutable)), edited(option_changed(1, mutable))],
                         "Hop-by-Hop and Destination Options before AH; Hop Limit, Traffic Class, Flow Label or "
                         "a changeable option's data changed in flight")
    spare = pair.selector("spare", pair.builtin_end, 6).split("/")[0]
    pair.expect_dropped([edited(lambda p: ipv6_with(p, src=spare)), edited(option_changed(0, EXPERIMENT)),
                         edited(option_changed(1, EXPERIMENT))], ICV_FAILED,
                        "the source address or an unchangeable option's data changed in flight")
    pair.terminate()



def _taken(pair, make, what: str) -> tuple[bool, dict[str, int]]:
    """Send one crafted packet; (whether the peer answered it, the drop counters its kernel moved), as soon as one
    of the two shows (no wait for an answer that cannot come)."""
    inbound, before = pair.inbound(), pair.counters()
    sent = pair.craft(make)
    state: dict[str, dict[str, int]] = {}

    def settled() -> bool:
        state["rose"] = {k: n for k, n in pair.counters().rose(before, inbound).items()
                         if k.startswith("XfrmIn") or k in ("failed", "replay")}  # inbound drops only
        return pair.builtin.echo_replied(*sent) or bool(state["rose"])

    pair.wait(settled, f"the peer answers or counts {what}")
    return pair.builtin.echo_replied(*sent), state["rose"]


@pytest.mark.ends("builtin>peer")
@pytest.mark.rfc(4302, "3.4.3", "MUST")
def test_a_replayed_ah_packet_is_dropped(pair):
    """An AH packet that verifies but repeats a sequence number the SA already took (the anti-replay service IKE
    SAs have on by default, s3.4.3) must be dropped and counted (XfrmInStateSeqError and the SA's replay counter)."""
    pair.establish(pair.connection(version=6, protocol="ah", mode="tunnel", child_proposals=["sha256"]))
    pair.expect_accepted([protect_with(Faults())], "a correct packet")
    pair.expect_dropped([lambda tx, inner: tx.replay(1)], ("XfrmInStateSeqError", "replay"), "a replayed AH packet")
    pair.terminate()
