"""The wire check run after every interop case: the case's captures must agree with the keys and counters the ends reported.

``check_wire(pcaps, keys, counters, decrypted_dir) -> WireReport``. Every segment's capture
(segment name -> pcap) is decrypted by harness.tools.capture_decrypt with the keys both ends
reported; a problem, one line naming segment, file, frame and SPI, is recorded for:

- an ESP/AH packet that does not decrypt or verify (ICV, padding, structure);
- an ESP/AH packet whose SPI is in no keys entry (an SA neither end reported);
- a sequence number repeated on one SA within one capture (a sender never reuses one:
  RFC 4303 s3.3.3, RFC 4302 s3.3.2), one lower than the one before it on the segment (the
  sender's counter only increases), and an SA's first packet whose sequence number is not 1 (unless the SA's packets
  went to two destinations: a NAT's new mapping moved it mid-SA, RFC 7296 s2.23);
- an IV repeated under one SA's key (RFC 4303 s2.3; a counter-mode IV must never repeat,
  RFC 3686 s3, RFC 4106 s3.1, RFC 7634 s2; a CBC IV must be unpredictable, RFC 3602 s3);
- an IKE message whose SK/SKF payload does not verify (RFC 7296 s3.14, RFC 7383);
- a clear packet between the ends that a Child SA's selectors cover, sent while the Child SA stood (RFC 4301 s5;
  what may legitimately pass in clear: harness.tools.cleartext);
- an ``SaCounter`` that disagrees with the wire: an "out" counter (packets the end's kernel
  sent on the SA) must equal the packets of that SA on the wire, an "in" counter (packets it
  accepted) must not exceed them. A packet crossing two segments is seen twice, so the wire's
  count of an SA is its highest count over the segments.

IKE messages of IKE SAs without keys are counted (``ike_unknown_spi``), not problems: an end
need not report the keys of every IKE SA it saw. ESP/AH packets an end crafted on purpose (``crafted``: a
bad ICV, a chosen or replayed sequence number, a wrong SPI) are counted (``ipsec_crafted``), never faulted, and
left out of the per-packet checks and of the count an "out" counter must equal. With ``decrypted_dir`` the decrypted capture
of every segment carrying ESP/AH is written there as ``<segment>.decrypted.pcap``.
"""
from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import ConfigError
from harness.keys import KeysFile
from harness.tools.capture_decrypt import (
    DecryptReport,
    PacketResult,
    decrypt_capture,
    write_decrypted,
)
from harness.tools.cleartext import Selectors, cleartext_problems
from harness.tools.ike_decrypt import IkeResult
from harness.tools.pcapio import LINKTYPE_ETHERNET, CapturedPacket, read_capture

SaId = tuple[str, int, str]  # (protocol, SPI, destination address): what names an IPsec SA (RFC 4301 s4.1)
DIRECTIONS = ("out", "in")


@dataclass
class SaCounter:
    """What one end's kernel says it sent ("out") or accepted ("in") on one SA."""

    protocol: str  # "esp" | "ah"
    spi: int
    dst: str
    packets: int
    direction: str  # "out" | "in"
    end: str = ""  # the end's name, for messages

    def __post_init__(self) -> None:
        if self.protocol not in ("esp", "ah"):
            raise ConfigError(f"SA counter of {self.end or 'an end'}: protocol {self.protocol!r} is not 'esp' or 'ah'")
        if self.direction not in DIRECTIONS:
            raise ConfigError(f"SA counter of {self.end or 'an end'}: direction {self.direction!r} is not 'out' or 'in'")
        try:
            self.dst = str(ipaddress.ip_address(self.dst))
        except ValueError:
            raise ConfigError(f"SA counter of {self.end or 'an end'}: dst {self.dst!r} is not an IP address") from None

    @property
    def sa(self) -> SaId:
        """(protocol, SPI, dst) of the SA counted."""
        return (self.protocol, self.spi, self.dst)


@dataclass
class WireReport:
    """The problems found on the wire, the decryption counts summed over the captures, and the packets per SA."""

    problems: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    per_sa: dict[SaId, int] = field(default_factory=dict)  # highest count over the segments
    decrypted: dict[str, Path] = field(default_factory=dict)  # segment -> decrypted capture written
    ike: list[tuple[int, IkeResult]] = field(default_factory=list)  # each IKE datagram (capture time in ns, result)

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems


def _read(segment: str, path: Path) -> list[CapturedPacket]:
    """The packets of a segment's capture; ConfigError when the file cannot be read, ParseError when it is no capture."""
    try:
        return read_capture(path)
    except OSError as e:
        raise ConfigError(f"segment {segment}: {path}: cannot read capture: {e.strerror}") from None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _packet_problem(where: str, r: PacketResult) -> str | None:
    """The problem with one ESP/AH packet or IKE message, or None."""
    if r.ike is not None and r.ike.status == "failed":
        spis = f"0x{r.ike.spi_i.hex() or '?'}/0x{r.ike.spi_r.hex() or '?'}"
        return f"{where} frame {r.index}: IKE SA {spis} {r.ike.describe()}: SK/SKF does not verify: {_one_line(r.ike.reason)}"
    if r.protocol is None:
        return None
    sa = f"{r.protocol.upper()} SPI 0x{r.spi:08x} to {r.dst} seq {r.seq}"
    if r.status == "failed":
        return f"{where} frame {r.index}: {sa}: does not decrypt/verify: {_one_line(r.reason)}"
    if r.status == "unknown_spi":
        return f"{where} frame {r.index}: {sa}: unknown SPI (in no keys entry: neither end reported this SA)"
    return None


def _sequence_problems(where: str, results: list[PacketResult], first_must_be_one: bool) -> list[str]:
    """One SA's opened packets on one segment, in capture order: each sequence number new and higher than the one
    before (RFC 4303 s3.3.3, RFC 4302 s3.3.2), the first 1 when first_must_be_one."""
    out: list[str] = []
    seen: set[int] = set()
    last = 0
    for r in results:
        sa = f"{r.protocol.upper() if r.protocol else '?'} SPI 0x{r.spi or 0:08x} to {r.dst}"
        seq = r.seq or 0
        if not seen and first_must_be_one and seq != 1:
            out.append(f"{where} frame {r.index}: {sa}: the SA's first packet has sequence number {seq}, not 1 "
                       f"(RFC 4303 s3.3.3)")
        if seq in seen:
            out.append(f"{where} frame {r.index}: {sa} seq {seq}: sequence number repeated on the SA")
        elif seq < last:
            out.append(f"{where} frame {r.index}: {sa} seq {seq}: lower than {last} before it (the sender's counter "
                       f"only increases: RFC 4303 s3.3.3)")
        seen.add(seq)
        last = max(last, seq)
    return out


def _iv_problems(results: Iterable[tuple[str, PacketResult]]) -> list[str]:
    """IVs repeated under one SA's key: the same IV on two packets of different sequence numbers."""
    out: list[str] = []
    first: dict[tuple[SaId, bytes], tuple[str, PacketResult]] = {}
    for where, r in results:
        if not r.iv:
            continue
        sa: SaId = (r.protocol or "", r.spi or 0, r.dst or "")
        seen = first.setdefault((sa, r.iv), (where, r))
        if seen[1].seq != r.seq:
            out.append(f"{where} frame {r.index}: {sa[0].upper()} SPI 0x{sa[1]:08x} to {sa[2]} seq {r.seq}: IV "
                       f"{r.iv.hex()} repeated from seq {seen[1].seq} ({seen[0]} frame {seen[1].index}) under one key "
                       f"(RFC 4303 s2.3: counter modes never repeat one, RFC 4106 s3.1, RFC 3686 s3; CBC: RFC 3602 s3)")
    return out


def _packets_per_sa(report: DecryptReport) -> Counter[SaId]:
    """ESP/AH packets of each SA in one capture (a reassembled packet once, at the frame completing it)."""
    return Counter((r.protocol, r.spi, r.dst) for r in report.results if r.protocol is not None and r.dst is not None)


def _counter_problem(c: SaCounter, seen: dict[str, int], crafted: dict[str, int]) -> str | None:
    """The disagreement between a kernel counter and the SA's packets on the wire (segment -> count; crafted: of
    them, the packets an end crafted, which its "out" counter does not count), or None."""
    if c.direction == "out":
        seen = {seg: n - crafted.get(seg, 0) for seg, n in seen.items()}
    wire = max(seen.values(), default=0)
    if (c.packets == wire) if c.direction == "out" else (c.packets <= wire):
        return None
    verb, rule = ("sent", "must equal") if c.direction == "out" else ("accepted", "must not exceed")
    where = ", ".join(f"{s}: {n}" for s, n in seen.items()) or "in no capture"
    return (f"{c.end or 'an end'}: {c.direction} counter of {c.protocol.upper()} SPI 0x{c.spi:08x} to {c.dst}: "
            f"{c.packets} packets {verb}, the wire has {wire} ({where}); it {rule} the wire's count")


def _linktype(packets: list[CapturedPacket]) -> str:
    """"ethernet" when every packet is an Ethernet frame (the decrypted capture keeps the MACs), else "raw"."""
    return "ethernet" if packets and all(p.linktype == LINKTYPE_ETHERNET for p in packets) else "raw"


def check_wire(pcaps: dict[str, Path], keys: KeysFile, counters: Iterable[SaCounter] = (),
               decrypted_dir: Path | None = None, bent: Collection[bytes] = (),
               crafted: Collection[bytes] = (), selectors: Iterable[Selectors] = ()) -> WireReport:
    """Decrypt every segment's capture with keys and report each packet, message and counter that disagrees; never
    raises on packet content. bent: IKE datagrams an end malformed on purpose (counted as ike_bent, not faulted);
    crafted: outer ESP/AH packets an end sent on purpose (counted as ipsec_crafted, not faulted); selectors: the
    Child SAs' selector pairs, whose traffic must not cross in clear while one stands (harness.tools.cleartext)."""
    selectors = list(selectors)
    out = WireReport()
    totals: Counter[str] = Counter()
    seen: dict[SaId, dict[str, int]] = {}
    crafted_seen: dict[SaId, dict[str, int]] = {}
    opened: dict[tuple[str, SaId], list[PacketResult]] = {}
    for segment, path in pcaps.items():
        path = Path(path)
        packets = _read(segment, path)
        report = decrypt_capture(packets, keys.ipsec_sas, keys.sections.get("ike_sas", []))
        out.ike += [(r.ts_ns, r.ike) for r in report.results if r.ike is not None]
        totals.update(report.counts())
        where = f"{segment} ({path.name})"
        frames = {p.index: p.data for p in packets}
        for r in report.results:
            frame = frames.get(r.index, b"")
            if r.ike is not None and r.ike.status == "failed" and any(frame.endswith(d) for d in bent):
                totals["ike_bent"] += 1
            elif r.protocol is not None and r.dst is not None and crafted and any(c in frame for c in crafted):
                totals["ipsec_crafted"] += 1
                by_seg = crafted_seen.setdefault((r.protocol, r.spi or 0, r.dst), {})
                by_seg[segment] = by_seg.get(segment, 0) + 1
            elif problem := _packet_problem(where, r):
                out.problems.append(problem)
            elif r.status in ("decrypted", "verified") and r.dst is not None:
                opened.setdefault((where, (r.protocol or "", r.spi or 0, r.dst)), []).append(r)
        out.problems += cleartext_problems(where, packets, report.results, selectors)
        per_sa = _packets_per_sa(report)
        for sa, n in per_sa.items():
            seen.setdefault(sa, {})[segment] = n
        if decrypted_dir is not None and per_sa:
            target = Path(decrypted_dir) / f"{segment}.decrypted.pcap"
            target.parent.mkdir(parents=True, exist_ok=True)
            write_decrypted(report, packets, target, _linktype(packets))
            out.decrypted[segment] = target
    dsts = Counter((p, s) for p, s, _ in {sa for _, sa in opened})  # an SA a NAT rebinding moved has two destinations
    for (where, sa), results in opened.items():
        out.problems += _sequence_problems(where, results, first_must_be_one=sa not in crafted_seen
                                           and dsts[(sa[0], sa[1])] == 1)
    out.problems += _iv_problems((where, r) for (where, _), results in opened.items() for r in results)
    out.counts = dict(totals)
    out.per_sa = {sa: max(by_segment.values()) for sa, by_segment in seen.items()}
    out.problems += [p for p in (_counter_problem(c, seen.get(c.sa, {}), crafted_seen.get(c.sa, {})) for c in counters)
                     if p]
    return out
