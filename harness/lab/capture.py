"""Capture every segment of a lab to pcap (AF_PACKET on each bridge, promiscuous, one reader thread).

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


def _open_capture_socket(ifname: str) -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
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


class Capture:
    """Captures frames on named interfaces of one namespace into <directory>/<segment>.pcap until stop()."""

    def __init__(self, namespace: str, interfaces: dict[str, str], directory: str | Path) -> None:
        self.namespace = namespace
        self.interfaces = dict(interfaces)  # segment name -> interface name in `namespace`
        self.directory = Path(directory)
        self.files: dict[str, Path] = {seg: self.directory / f"{seg}.pcap" for seg in self.interfaces}
        self.counts: dict[str, int] = dict.fromkeys(self.interfaces, 0)
        self._socks: dict[str, socket.socket] = {}
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = -1, -1
        self._error: BaseException | None = None

    def start(self) -> "Capture":
        """Open the sockets (inside the namespace) and start the reader thread; returns self."""
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            for seg, ifname in self.interfaces.items():
                self._socks[seg] = netns.run_in(self.namespace, _open_capture_socket, ifname)
        except OSError as e:
            self._close_sockets()
            raise LabError(f"capture in {self.namespace}: {e}") from e
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._loop, name=f"capture:{self.namespace}", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        files = {seg: open(path, "wb") for seg, path in self.files.items()}
        sel = selectors.DefaultSelector()
        try:
            for seg, f in files.items():
                f.write(pcap_header())
                sel.register(self._socks[seg], selectors.EVENT_READ, seg)
            sel.register(self._wake_r, selectors.EVENT_READ, None)
            stopping = False
            while not stopping:
                for key, _ in sel.select():
                    if key.data is None:
                        stopping = True
                    else:
                        self._read_all(key.fileobj, files[key.data], key.data)  # type: ignore[arg-type]
            for seg, s in self._socks.items():  # drain what arrived before stop()
                self._read_all(s, files[seg], seg)
        except OSError as e:
            self._error = e
        finally:
            sel.close()
            for f in files.values():
                f.close()

    def _read_all(self, s: socket.socket, f: Any, seg: str) -> None:
        while True:
            try:
                frame, anc, _, addr = s.recvmsg(SNAPLEN, 64)
            except BlockingIOError:
                return
            ts = None
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, ns = struct.unpack("qq", data[:16])
                    ts = sec * 1_000_000_000 + ns
            f.write(pcap_record(ts if ts is not None else 0, frame))
            self.counts[seg] += 1

    def _close_sockets(self) -> None:
        for s in self._socks.values():
            s.close()
        self._socks.clear()

    def stop(self, keys: Any = None) -> dict[str, Path]:
        """Stop, flush the pcaps, write keys.json (and Wireshark esp_sa) if keys are given; the pcap paths."""
        if self._thread is not None:
            os.write(self._wake_w, b"x")
            self._thread.join(timeout=10)
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._thread = None
        self._close_sockets()
        if keys is not None:
            write_keys(self.directory, keys)
        if self._error is not None:
            raise LabError(f"capture in {self.namespace}: {self._error}")
        return dict(self.files)

    def __enter__(self) -> "Capture":
        return self.start()

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
