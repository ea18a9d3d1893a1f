"""A pcap of the built-in IKEv2 stack talking to itself in memory (harness.ike.loopback), with ESP, and its keys.

``loopback_capture(ike_proposal, esp_proposal) -> LoopbackCapture``: two IKE SAs, deterministic
(fake clock, seeded RNGs):

- 198.18.0.1:500 <-> 198.18.0.2:500, no IKE fragmentation: IKE_SA_INIT, IKE_AUTH, one ESP
  packet each way, CREATE_CHILD_SA rekeying the Child SA (and the INFORMATIONAL deleting the
  old one), one ESP packet each way on the new Child SA, INFORMATIONAL deleting it;
- 198.18.0.3:4500 <-> 198.18.0.4:4500 (IKE behind the non-ESP marker, RFC 3948 s2.2), IKE
  fragmentation with 200-octet datagrams: IKE_SA_INIT, IKE_AUTH in SKF fragments (RFC 7383),
  one UDP-encapsulated ESP packet each way.

``keys`` is the union of ``IkeEndpoint.export()`` taken while each SA was alive (a keys file
collecting SAs over time), ``tables`` likewise of ``IkeEndpoint.wireshark()``; ``frames`` the
raw IPv4 packets, ``ike`` the IKE datagrams among them (frame number, Datagram).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

from harness.esp import SecurityAssociation, Sender
from harness.esp.ip import addr_bytes, ipv4_header
from harness.ike.auth import Identity
from harness.ike.config import IkeConfig
from harness.ike.endpoint import Datagram, IkeEndpoint
from harness.ike.loopback import FakeClock, Wire, seeded_rng
from harness.ike.proposals import parse_proposals
from harness.keys.jsonfile import parse_ipsec_sa
from harness.tools.pcapio import write_pcap

PAIR_PLAIN = (("198.18.0.1", 500), ("198.18.0.2", 500))
PAIR_FRAG = (("198.18.0.3", 4500), ("198.18.0.4", 4500))
FRAGMENT_SIZE = 200
PSK = b"ipsec-interop capture PSK"


def udp_ipv4(src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> bytes:
    """An IPv4/UDP packet (UDP checksum 0) carrying payload."""
    udp = struct.pack("!HH", src[1], dst[1]) + struct.pack("!HH", 8 + len(payload), 0) + payload
    return ipv4_header(addr_bytes(src[0]), addr_bytes(dst[0]), 17, len(udp)) + udp


def ike_frame(d: Datagram) -> bytes:
    """The IPv4/UDP packet of an IKE datagram: behind the non-ESP marker when either port is 4500."""
    marker = b"\x00" * 4 if 4500 in (d.src[1], d.dst[1]) else b""
    return udp_ipv4(d.src, d.dst, marker + d.data)


@dataclass
class LoopbackCapture:
    """The packets of a loopback run, the IKE datagrams among them, and every SA's keys."""

    frames: list[bytes] = field(default_factory=list)
    ike: list[tuple[int, Datagram]] = field(default_factory=list)  # (frame number from 1, datagram)
    esp: list[int] = field(default_factory=list)  # frame numbers of ESP packets
    keys: dict[str, list[dict]] = field(default_factory=lambda: {"ike_sas": [], "ipsec_sas": []})
    tables: dict[str, list[str]] = field(default_factory=lambda: {"ikev2_decryption_table": [], "esp_sa": []})

    def write(self, path: str | Path, order: list[int] | None = None) -> int:
        """Write the frames (in order: frame numbers from 1, default as captured) to a raw-IP pcap."""
        idx = order or list(range(1, len(self.frames) + 1))
        return write_pcap(path, [(n * 1_000_000, self.frames[i - 1]) for n, i in enumerate(idx)])

    def _log(self, w: Wire, start: int) -> int:
        for d in w.log[start:]:
            self.frames.append(ike_frame(d))
            self.ike.append((len(self.frames), d))
        return len(w.log)

    def _snapshot(self, *endpoints: IkeEndpoint) -> None:
        for e in endpoints:
            for name, entries in e.export().items():
                self.keys[name] += [x for x in entries if x not in self.keys[name]]
            for name, lines in e.wireshark().items():
                self.tables[name] += [x for x in lines if x not in self.tables[name]]

    def _esp(self, a: IkeEndpoint, b: IkeEndpoint, udp: bool, n: int) -> None:
        """One ESP packet each way on every Child SA a holds, from senders of the exported keys."""
        for sa in a.established():
            for child in sa.children.values():
                inbound, outbound = child.sa_keys(sa.local[0], sa.remote[0])
                for keys, src, dst in ((outbound, sa.local, sa.remote), (inbound, sa.remote, sa.local)):
                    tx = Sender(SecurityAssociation.from_keys(keys, udp_encap=(4500, 4500) if udp else None),
                                random=seeded_rng(n + keys.spi))
                    inner = udp_ipv4((src[0], 40000 + n), (dst[0], 7), f"ESP test payload {n} SPI {keys.spi:08x}".encode())
                    self.frames.append(tx.protect(inner))
                    self.esp.append(len(self.frames))


def _config(side: str, ike: str, esp: str, **kw) -> IkeConfig:
    return IkeConfig(local_id=Identity.of(f"{side}.example"), psk=PSK, ike_proposals=parse_proposals(ike, "ike"),
                     child_proposals=parse_proposals(esp, "esp"), **kw)


def loopback_capture(ike: str = "aes128-sha256-modp2048", esp: str = "aes128gcm16") -> LoopbackCapture:
    """Run both IKE SAs (see the module docstring) and return their capture and keys."""
    cap = LoopbackCapture()
    clock = FakeClock()
    a = IkeEndpoint(_config("moon", ike, esp, fragmentation=False), PAIR_PLAIN[0], clock, seeded_rng(11))
    b = IkeEndpoint(_config("sun", ike, esp, fragmentation=False), PAIR_PLAIN[1], clock, seeded_rng(12))
    w = Wire(a, b)
    w.run(a.initiate(PAIR_PLAIN[1]))
    at = cap._log(w, 0)
    cap._snapshot(a)
    cap._esp(a, b, False, 1)
    (sa,) = a.established()
    (old,) = sa.children
    w.run(a.rekey_child(sa, old))
    at = cap._log(w, at)
    cap._snapshot(a)
    cap._esp(a, b, False, 2)
    (new,) = sa.children
    w.run(a.delete_child(sa, new))
    at = cap._log(w, at)

    c = IkeEndpoint(_config("venus", ike, esp, fragment_size=FRAGMENT_SIZE), PAIR_FRAG[0], clock, seeded_rng(13))
    d = IkeEndpoint(_config("mars", ike, esp, fragment_size=FRAGMENT_SIZE), PAIR_FRAG[1], clock, seeded_rng(14))
    w2 = Wire(c, d)
    w2.run(c.initiate(PAIR_FRAG[1]))
    cap._log(w2, 0)
    cap._snapshot(c)
    cap._esp(c, d, True, 3)
    for entry in cap.keys["ipsec_sas"]:
        parse_ipsec_sa(entry, "export")  # the exported entries are valid keys-file entries
    return cap
