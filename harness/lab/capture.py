"""Capture every segment of a lab to pcap (AF_PACKET on each bridge, promiscuous, one reader thread per lab).

AF_PACKET is used rather than tcpdump: the socket captures from the moment it is bound (no
wait for tcpdump's "listening on"), there is no process to record and stop, and the kernel's
nanosecond receive timestamps (SO_TIMESTAMPNS) go into a nanosecond pcap.
A bridge hands forwarded frames to its own device only while promiscuous, so each socket
joins PACKET_MR_PROMISC (dropped automatically when the socket closes).
"""
from __future__ import annotations

import json
import os
import selectors
import socket
import struct
import threading
from pathlib import Path
from typing import Any

from harness.errors import LabError
from harness.lab import netns

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
SO_TIMESTAMPNS = 35
ETH_P_ALL = 0x0003
LINKTYPE_ETHERNET = 1
PCAP_NS_MAGIC = 0xA1B23C4D
SNAPLEN = 65535
RCVBUF = 4 << 20


def pcap_header(linktype: int = LINKTYPE_ETHERNET, snaplen: int = SNAPLEN) -> bytes:
    """A pcap global header with nanosecond timestamps."""
    return struct.pack("<IHHiIII", PCAP_NS_MAGIC, 2, 4, 0, 0, snaplen, linktype)


def pcap_record(ts_ns: int, frame: bytes, orig_len: int | None = None) -> bytes:
    """One pcap record (nanosecond timestamps) for frame."""
    sec, ns = divmod(ts_ns, 1_000_000_000)
    return struct.pack("<IIII", sec, ns, len(frame), len(frame) if orig_len is None else orig_len) + frame


def read_pcap(path: str | Path) -> list[tuple[int, bytes]]:
    """The (timestamp ns, frame) records of a pcap written here (microsecond or nanosecond, little-endian)."""
    data = Path(path).read_bytes()
    if len(data) < 24:
        raise LabError(f"{path}: not a pcap file (only {len(data)} bytes)")
    magic = struct.unpack_from("<I", data)[0]
    if magic not in (PCAP_NS_MAGIC, 0xA1B2C3D4):
        raise LabError(f"{path}: not a little-endian pcap file (magic 0x{magic:08x})")
    scale = 1 if magic == PCAP_NS_MAGIC else 1000
    out, off = [], 24
    while off + 16 <= len(data):
        sec, frac, incl, _ = struct.unpack_from("<IIII", data, off)
        out.append((sec * 1_000_000_000 + frac * scale, data[off + 16:off + 16 + incl]))
        off += 16 + incl
    return out


def ipsec_spi(frame: bytes) -> int | None:
    """The SPI of an Ethernet frame carrying ESP or AH (IPv4/IPv6, or ESP in UDP 4500), else None.

    Lengths come from the IP and UDP headers, not the frame: short frames arrive padded to 60 octets.
    """
    if len(frame) < 14:
        return None
    ethertype = int.from_bytes(frame[12:14], "big")
    if ethertype == 0x0800 and len(frame) >= 34:
        proto, off, end = frame[23], 14 + (frame[14] & 0x0F) * 4, 14 + int.from_bytes(frame[16:18], "big")
    elif ethertype == 0x86DD and len(frame) >= 54:
        proto, off, end = frame[20], 54, 54 + int.from_bytes(frame[18:20], "big")
    else:
        return None
    end = min(end, len(frame))
    if proto == 51:
        off += 4  # AH: Next Header, Payload Len, RESERVED before the SPI
    elif proto == 17:
        if end - off < 8 or 4500 not in (int.from_bytes(frame[off:off + 2], "big"), int.from_bytes(frame[off + 2:off + 4], "big")):
            return None
        end = min(end, off + int.from_bytes(frame[off + 4:off + 6], "big"))
        off += 8
        if end - off < 8 or frame[off:off + 4] == b"\0\0\0\0":
            return None  # a NAT-keepalive, or IKE behind the non-ESP marker (RFC 3948 s2.2)
    elif proto != 50:
        return None
    return int.from_bytes(frame[off:off + 4], "big") if end >= off + 4 else None


def _open_capture_socket(ifname: str) -> socket.socket:
    # protocol 0 at socket() and ETH_P_ALL at bind(): measured 0.3 ms, versus 8-16 ms for socket(ETH_P_ALL),
    # whose protocol hook registration waits for an RCU grace period
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        s.bind((ifname, ETH_P_ALL))
        mreq = struct.pack("iHH8s", socket.if_nametoindex(ifname), PACKET_MR_PROMISC, 0, b"")
        s.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
    except OSError:
        s.close()
        raise
    s.setblocking(False)
    return s


class Capturer:
    """Long-lived capture sockets on a namespace's interfaces and one reader thread; frames go to the
    current Capture's files, or are discarded when none is active.

    The sockets stay open for the lab's life: closing an AF_PACKET socket costs 8-16 ms here (an RCU
    grace period), so per-test captures only swap files (begin/end), which costs well under a millisecond.
    """

    def __init__(self, namespace: str, interfaces: dict[str, str]) -> None:
        self.namespace = namespace
        self.interfaces = dict(interfaces)  # segment name -> interface name in `namespace`
        self._socks: dict[str, socket.socket] = {}
        self._files: dict[str, Any] | None = None
        self._counts: dict[str, int] = {}
        self._spis: set[int] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = -1, -1
        self._error: OSError | None = None
        self.active: "Capture | None" = None

    def open(self) -> "Capturer":
        """Open the sockets (inside the namespace) and start the reader thread."""
        try:
            for seg, ifname in self.interfaces.items():
                self._socks[seg] = netns.run_in(self.namespace, _open_capture_socket, ifname)
        except OSError as e:
            self.close()
            raise LabError(f"capture in {self.namespace}: {e}") from e
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._loop, name=f"capture:{self.namespace}", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        sel = selectors.DefaultSelector()
        try:
            for seg, s in self._socks.items():
                sel.register(s, selectors.EVENT_READ, seg)
            sel.register(self._wake_r, selectors.EVENT_READ, None)
            while True:
                events = sel.select()
                if any(key.data is None for key, _ in events):
                    return
                with self._lock:
                    for key, _ in events:
                        self._read_all(key.data)
        except OSError as e:
            self._error = e
        finally:
            sel.close()

    def _read_all(self, seg: str) -> None:
        s = self._socks[seg]
        while True:
            try:
                frame, anc, _, _ = s.recvmsg(SNAPLEN, 64)
            except BlockingIOError:
                return
            if self._files is None:
                continue
            ts = 0
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, ns = struct.unpack("qq", data[:16])
                    ts = sec * 1_000_000_000 + ns
            self._files[seg].write(pcap_record(ts, frame))
            self._counts[seg] += 1
            spi = ipsec_spi(frame)
            if spi is not None:
                self._spis.add(spi)

    def begin(self, capture: "Capture") -> None:
        """Drop what is queued, then write every frame from now on into capture's files."""
        if self._thread is None:
            raise LabError(f"capture in {self.namespace}: not open")
        with self._lock:
            if self.active is not None:
                raise LabError(f"capture in {self.namespace}: {self.active.directory} is still running")
            for seg in self._socks:
                self._read_all(seg)  # _files is None: discarded
            capture.directory.mkdir(parents=True, exist_ok=True)
            self._files = {seg: open(capture.files[seg], "wb") for seg in self._socks}
            for f in self._files.values():
                f.write(pcap_header())
            self._counts = dict.fromkeys(self._socks, 0)
            self._spis = set()
            self.active = capture

    def end(self, capture: "Capture") -> tuple[dict[str, int], set[int]]:
        """Write what is queued into capture's files, close them; frame counts per segment, ESP/AH SPIs seen."""
        with self._lock:
            if self.active is not capture:
                return dict(capture.counts), set(capture.spis)
            for seg in self._socks:
                self._read_all(seg)
            for f in (self._files or {}).values():
                f.close()
            self._files, self.active = None, None
            counts, spis = dict(self._counts), set(self._spis)
        if self._error is not None:
            raise LabError(f"capture in {self.namespace}: {self._error}")
        return counts, spis

    def flush(self, capture: "Capture") -> None:
        """Write what is queued into capture's files and flush them (the capture goes on), so they can be read now."""
        with self._lock:
            if self.active is not capture:
                return
            for seg in self._socks:
                self._read_all(seg)
            for f in (self._files or {}).values():
                f.flush()

    def close(self) -> None:
        """Stop the reader thread and close the sockets (idempotent)."""
        if self.active is not None:
            self.end(self.active)
        if self._thread is not None:
            os.write(self._wake_w, b"x")
            self._thread.join(timeout=10)
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._thread = None
        # each close waits for an RCU grace period (8-16 ms): close them side by side
        closers = [threading.Thread(target=s.close) for s in self._socks.values()]
        for t in closers:
            t.start()
        for t in closers:
            t.join()
        self._socks.clear()


class Capture:
    """One capture of every segment into <directory>/<segment>.pcap (nanosecond pcap) until stop()."""

    def __init__(self, capturer: Capturer, directory: str | Path) -> None:
        self.capturer = capturer
        self.directory = Path(directory)
        self.files: dict[str, Path] = {seg: self.directory / f"{seg}.pcap" for seg in capturer.interfaces}
        self.counts: dict[str, int] = dict.fromkeys(self.files, 0)
        self.spis: set[int] = set()  # SPIs of the ESP/AH packets captured (raw and UDP-encapsulated)
        self.stopped = False

    def start(self) -> "Capture":
        """Begin writing the pcaps; returns self."""
        self.capturer.begin(self)
        return self

    def stop(self, keys: Any = None) -> dict[str, Path]:
        """Stop, flush the pcaps, write keys.json (and Wireshark esp_sa) if keys are given; the pcap paths."""
        if not self.stopped:
            self.stopped = True
            self.counts, self.spis = self.capturer.end(self)
        if keys is not None:
            write_keys(self.directory, keys)
        return dict(self.files)

    def flush(self) -> dict[str, Path]:
        """The pcap paths, every frame captured so far written into them (the capture goes on)."""
        if not self.stopped:
            self.capturer.flush(self)
        return dict(self.files)

    def __enter__(self) -> "Capture":
        return self if self.capturer.active is self else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def write_keys(directory: str | Path, keys: Any) -> Path:
    """Write keys.json beside a capture: a KeysFile or list of IpsecSaKeys via harness.keys, or a plain dict.

    With IpsecSaKeys, Wireshark's esp_sa table is written too, so the pcaps open decrypted.
    """
    path = Path(directory) / "keys.json"
    if isinstance(keys, dict):
        path.write_text(json.dumps(keys, indent=2) + "\n")
        return path
    from harness.keys import KeysFile, dump_esp_sa, dump_keys

    sas = keys.ipsec_sas if isinstance(keys, KeysFile) else list(keys)
    dump_keys(keys if isinstance(keys, KeysFile) else sas, path)
    if sas:
        dump_esp_sa(sas, Path(directory) / "esp_sa")
    return path
