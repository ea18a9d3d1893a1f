"""IPv6 raw sockets that carry whole packets: sent with IPV6_HDRINCL, received with the header put back.

A raw AF_INET6 socket hands the receiver only what follows the extension headers the kernel processed (for
ESP/AH: the ESP/AH header on), never the IPv6 header. AH's ICV covers that header and the extension headers
before AH (RFC 4302 s3.3.3.1.2), so `receive` rebuilds them from what the kernel reports beside the data:
the source from recvmsg, the destination from IPV6_PKTINFO, the Hop Limit and Traffic Class from their
ancillary items, and the Hop-by-Hop, Destination Options and Routing headers (IPV6_HOPOPTS, IPV6_DSTOPTS,
IPV6_RTHDR) in the order the kernel walked them. The flow label is not reported and comes back as 0 (AH
zeroes it for the ICV: s3.3.3.1.2.1).
"""
from __future__ import annotations

import socket
import struct

from harness.esp.ip import DEST_OPTS, HOP_BY_HOP, ROUTING, ipv6_header

IPV6_HDRINCL = 36  # linux/in6.h (since Linux 4.5); Python does not name it
_RECV = (socket.IPV6_RECVPKTINFO, socket.IPV6_RECVHOPLIMIT, socket.IPV6_RECVTCLASS, socket.IPV6_RECVHOPOPTS,
         socket.IPV6_RECVDSTOPTS, socket.IPV6_RECVRTHDR)
_EXT = {socket.IPV6_HOPOPTS: HOP_BY_HOP, socket.IPV6_DSTOPTS: DEST_OPTS, socket.IPV6_RTHDR: ROUTING}


def enable(sock: socket.socket) -> None:
    """Make an AF_INET6 raw socket send whole packets and report what `receive` needs to rebuild them."""
    sock.setsockopt(socket.IPPROTO_IPV6, IPV6_HDRINCL, 1)
    for opt in _RECV:
        sock.setsockopt(socket.IPPROTO_IPV6, opt, 1)


def receive(sock: socket.socket, bufsize: int = 65535) -> bytes:
    """The next packet on an `enable`d socket as it was on the wire (but for its flow label)."""
    data, ancillary, _flags, addr = sock.recvmsg(bufsize, 4096)
    return rebuild(data, ancillary, addr[0], sock.proto)


def rebuild(data: bytes, ancillary: list[tuple[int, int, bytes]], src: str, proto: int) -> bytes:
    """The IPv6 packet whose payload of protocol proto is data, from recvmsg's ancillary items."""
    dst, hop_limit, tclass, ext = bytes(16), 0, 0, []
    for level, kind, value in ancillary:
        if level != socket.IPPROTO_IPV6:
            continue
        if kind == socket.IPV6_PKTINFO:
            dst = value[:16]
        elif kind == socket.IPV6_HOPLIMIT:
            hop_limit = struct.unpack("=i", value[:4])[0]
        elif kind == socket.IPV6_TCLASS:
            tclass = struct.unpack("=i", value[:4])[0]
        elif kind in _EXT:
            ext.append((_EXT[kind], bytearray(value)))
    headers = b""
    for i, (_, h) in enumerate(ext):  # each header's Next Header names the one after it
        h[0] = ext[i + 1][0] if i + 1 < len(ext) else proto
        headers += bytes(h)
    first = ext[0][0] if ext else proto
    return ipv6_header(socket.inet_pton(socket.AF_INET6, src.split("%")[0]), dst, first,
                       len(headers) + len(data), tclass=tclass, hop_limit=hop_limit) + headers + data


def send(sock: socket.socket, packet: bytes) -> None:
    """Send a whole IPv6 packet (header included) on an `enable`d socket."""
    sock.sendto(packet, (socket.inet_ntop(socket.AF_INET6, packet[24:40]), 0))
