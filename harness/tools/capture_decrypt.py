"""Decrypt (ESP) and verify (AH, ESP with ENCR_NULL) every IPsec packet of a capture for which keys are known.

``decrypt_capture(packets, sas) -> DecryptReport``; ``write_decrypted(report, packets, path)``
writes the capture again with every opened packet replaced by its inner packet (the CLI's -o
and the wire check's decrypted captures). The SA state is capture-oriented: each packet is
opened on its own, so a retransmitted, duplicated or reordered packet is still decrypted; the
report flags it (``replay``: "duplicate" or "out_of_order") instead of failing it, because a
capture is evidence, not a receiver. The built-in receive path's anti-replay
window is therefore not applied here (RFC 4303 s3.4.3 is a receiver's duty; the replay suites
test it). For ESN SAs (RFC 4303 App. A) the high 32 bits are inferred from the highest
sequence number seen so far on the SA, trying the neighbouring epochs when the ICV fails.
Outer IP fragments (IPsec first, then fragmentation: RFC 4301 s8.1) are reassembled; the
frame that completes a packet carries its result, the others have status "fragment".

IKE messages (UDP 500, or 4500 behind the non-ESP marker) keep status "not_ipsec" (the status
is about ESP/AH) and carry an ``ike`` result (harness.tools.ike_decrypt): their SK/SKF payloads
are decrypted when ``ike_sas`` has the IKE SA. ``DecryptReport.ike_failed`` counts IKE failures.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import PacketDropped, ParseError
from harness.esp import Receiver
from harness.esp.ip import parse_ip
from harness.ike.export import IkeSaKeys
from harness.keys import IpsecSaKeys
from harness.tools.esp_adapter import Receivers, Unprotected, unprotect
from harness.tools.ike_decrypt import IKE_STATUSES, IkeDecryptor, IkeResult
from harness.tools.ipsec_locate import Located, locate, locate_ike
from harness.tools.pcapio import (
    LINKTYPE_ETHERNET,
    LINKTYPE_RAW,
    CapturedPacket,
    ethernet_frame,
    ip_of,
    write_pcap,
)
from harness.tools.reassembly import Reassembler

STATUSES = ("decrypted", "verified", "failed", "unknown_spi", "not_ipsec", "fragment")


@dataclass
class PacketResult:
    """What happened to one captured packet."""

    index: int
    ts_ns: int
    status: str  # one of STATUSES; "fragment": held for reassembly, the frame completing it carries the result
    protocol: str | None = None  # "esp" | "ah"
    spi: int | None = None
    seq: int | None = None  # full sequence number when known (ESN-inferred)
    udp_encap: bool = False
    dst: str | None = None  # destination address of an ESP/AH packet: with protocol and SPI it names the SA
    replay: str | None = None  # "duplicate" | "out_of_order" | None
    reason: str = ""
    inner: bytes | None = None  # the decrypted/verified inner IP packet
    iv: bytes = b""  # the packet's IV (ESP, AH with AES-GMAC) once it opened: never repeated under one key
    link: bytes = b""  # the link-layer header it arrived with
    reassembled: bool = False  # this frame completed a fragmented packet
    part_of: int | None = None  # a fragment: the index of the frame that completed its packet
    ike: IkeResult | None = None  # an IKE message: what its SK/SKF decryption gave

    def to_json(self) -> dict[str, Any]:
        """This result as JSON (without packet bytes)."""
        out: dict[str, Any] = {"index": self.index, "status": self.status}
        if self.protocol:
            out.update(protocol=self.protocol, spi=f"0x{self.spi:08x}", seq=self.seq, udp_encap=self.udp_encap)
        if self.replay:
            out["replay"] = self.replay
        if self.reassembled:
            out["reassembled"] = True
        if self.part_of is not None:
            out["part_of"] = self.part_of
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass
class _SaTrack:
    highest: int = 0
    seen: set[int] = field(default_factory=set)


@dataclass
class DecryptReport:
    """Per-packet results and the counts the CLI prints."""

    results: list[PacketResult]
    ike_incomplete: list[tuple[str, int, list[int]]] = field(default_factory=list)  # SKF messages missing fragments

    def count(self, status: str) -> int:
        """How many packets ended with this status."""
        return sum(1 for r in self.results if r.status == status)

    @property
    def failed(self) -> int:
        """Packets whose ICV/tag or structure did not verify."""
        return self.count("failed")

    def counts(self) -> dict[str, int]:
        """packets, decrypted, verified, failed, unknown_spi, not_ipsec, duplicates, out_of_order."""
        out = {"packets": len(self.results)}
        out.update({s: self.count(s) for s in STATUSES})
        out["reassembled"] = sum(1 for r in self.results if r.reassembled)
        out["duplicates"] = sum(1 for r in self.results if r.replay == "duplicate")
        out["out_of_order"] = sum(1 for r in self.results if r.replay == "out_of_order")
        ike = [r.ike for r in self.results if r.ike is not None]
        out["ike_messages"] = len(ike)
        out.update({f"ike_{s}": sum(1 for r in ike if r.status == s) for s in IKE_STATUSES})
        out["ike_reassembled"] = sum(1 for r in ike if r.reassembled_from)
        out["ike_incomplete"] = len(self.ike_incomplete)
        return out

    @property
    def ike_failed(self) -> int:
        """IKE messages whose SK/SKF ICV, padding or inner payloads did not verify."""
        return sum(1 for r in self.results if r.ike is not None and r.ike.status == "failed")

    def to_json(self) -> dict[str, Any]:
        """counts plus the per-packet list and the per-IKE-message list."""
        return {**self.counts(), "results": [r.to_json() for r in self.results],
                "ike": [r.ike.to_json() for r in self.results if r.ike is not None],
                "ike_incomplete_messages": [{"spis": s, "message_id": m, "missing": f} for s, m, f in self.ike_incomplete]}


def _find_sa(sas: list[IpsecSaKeys], loc: Located) -> IpsecSaKeys | None:
    """The SA for this packet: SPI and protocol must match; the destination address decides between equals."""
    matches = [sa for sa in sas if sa.spi == loc.spi and sa.protocol == loc.protocol]
    exact = [sa for sa in matches if sa.dst == loc.dst]
    return (exact or matches or [None])[0]


def _esn_candidates(track: _SaTrack, seq_lo: int) -> list[int]:
    """Full sequence numbers for a received low half, most likely first (RFC 4303 A2.2 with W = 2^31)."""
    t_hi, t_lo = track.highest >> 32, track.highest & 0xFFFFFFFF
    hi = t_hi + 1 if (t_lo >= 2**31 and seq_lo < t_lo - 2**31) else (t_hi - 1 if t_lo < 2**31 and seq_lo > t_lo + 2**31 and t_hi > 0 else t_hi)
    out = [hi] + [h for h in (t_hi, t_hi + 1, t_hi - 1) if h != hi and 0 <= h <= 0xFFFFFFFF]
    return [(h << 32) | seq_lo for h in out]


def _iv(rx: Receiver, loc: Located) -> bytes:
    """The IV of an opened packet: after SPI and Sequence Number (ESP, RFC 4303 s2.3), after the AH header's fixed
    part (AH with AES-GMAC, RFC 4543 s3); empty where the transform has none."""
    start = loc.offset + (8 if loc.protocol == "esp" else 12)
    return loc.ip[start:start + rx.iv_size]


def decrypt_capture(packets: Iterable[CapturedPacket], sas: list[IpsecSaKeys],
                    ike_sas: Iterable[IkeSaKeys] = ()) -> DecryptReport:
    """Open every ESP/AH packet for which sas has the SA and every IKE message ike_sas has keys for; never raises."""
    ike = IkeDecryptor(ike_sas)
    tracks: dict[tuple[str, int, str], _SaTrack] = {}
    frags = Reassembler()
    receivers: Receivers = {}
    results = []
    for pkt in packets:
        res = PacketResult(pkt.index, pkt.ts_ns, "not_ipsec")
        results.append(res)
        split = ip_of(pkt)
        if split is None:
            continue
        res.link, ip = split
        try:
            whole = frags.add(ip, res)
            if whole is None:
                res.status = "fragment"
                continue
            if whole is not ip:
                for part in frags.completed_tags:
                    if part is not res:
                        part.part_of = res.index
            loc = locate(whole)
        except ParseError as e:
            res.reason = str(e)
            continue
        res.reassembled = whole is not ip
        if loc is None:
            try:
                found = locate_ike(whole)
            except ParseError as e:
                res.reason = str(e)
                continue
            if found is not None:
                res.ike = ike.add(res.index, found.data)
                res.ike.src, res.ike.dst = found.src, found.dst
            continue
        res.protocol, res.spi, res.seq, res.udp_encap, res.dst = loc.protocol, loc.spi, loc.seq, loc.udp_encap, loc.dst
        sa = _find_sa(sas, loc)
        if sa is None:
            res.status = "unknown_spi"
            continue
        track = tracks.setdefault((sa.protocol, sa.spi, sa.dst), _SaTrack())
        candidates = _esn_candidates(track, loc.seq) if sa.esn else [loc.seq]
        opened: Unprotected | None = None
        for full_seq in candidates:
            try:
                opened = unprotect(sa, loc, full_seq, receivers)
                res.seq = full_seq
                break
            except PacketDropped as e:
                res.reason = f"{e.reason}: {e}"
                if e.reason != "bad_icv":  # malformed or bad padding once verified: no other ESN epoch helps
                    break
        if opened is None:
            res.status = "failed"
            continue
        res.reason = "dummy packet (Next Header 59)" if opened.dummy else ""
        res.inner = opened.inner or None
        if res.inner and sa.mode == "transport" and opened.next_header in (4, 41):
            # IP-in-IP under a "transport" SA: a tunnel-mode SA whose mode the keys did not say (Wireshark's
            # esp_sa has no mode column); the packet inside is the one that was protected
            res.inner = res.inner[parse_ip(res.inner, "inner packet").offset:]
        res.status = "verified" if (sa.protocol == "ah" or sa.encryption == "ENCR_NULL") else "decrypted"
        res.iv = _iv(receivers[(sa, loc.udp_encap)], loc)
        if res.seq in track.seen:
            res.replay = "duplicate"
        elif res.seq < track.highest:
            res.replay = "out_of_order"
        track.seen.add(res.seq)
        track.highest = max(track.highest, res.seq)
    return DecryptReport(results, ike.incomplete())


def write_decrypted(report: DecryptReport, packets: Sequence[CapturedPacket], path: str | Path, linktype: str = "raw") -> int:
    """Write packets as a pcap of IP packets ("raw") or Ethernet frames, opened ones replaced by their inner packet; returns how many."""
    frames = []
    for pkt, res in zip(packets, report.results):
        if res.part_of is not None:
            continue  # a fragment of a packet written whole at the frame that completed it
        if res.inner is not None:
            ip = res.inner
        else:
            split = ip_of(pkt)
            if split is None:
                continue  # not IP: nothing to put in an IP capture
            ip = split[1]
        if linktype == "ethernet":
            link = res.link if pkt.linktype == LINKTYPE_ETHERNET and len(res.link) >= 14 else b""
            frames.append((pkt.ts_ns, ethernet_frame(ip, link[6:12] or bytes(6), link[0:6] or bytes(6))))
        else:
            frames.append((pkt.ts_ns, ip))
    return write_pcap(path, frames, LINKTYPE_ETHERNET if linktype == "ethernet" else LINKTYPE_RAW)
