"""Edits of an IP packet's own header fields, as a router (or an attacker) on the path makes them.

AH cases protect a packet and then change its outer header to see which changes the receiver must tolerate (the
mutable fields RFC 4302 s3.3.3.1 zeroes for the ICV) and which it must drop (the immutable ones):
- `ipv4_with(packet, tos=, ttl=, ident=, df=, src=)`: the IPv4 header changed, its checksum recomputed.
- `ipv6_with(packet, tclass=, flow=, hop_limit=, src=)`: the IPv6 header changed.
- `ipv4_with_options(packet, options)`: an IPv4 packet (no options) given options (padded to 32 bits with EOL).
- `options_header(options)`: a Hop-by-Hop or Destination Options header (RFC 8200 s4.2) of (type, data)
  options padded to 8 octets; `with_extensions(packet, headers)` puts such headers between an IPv6 packet's
  header and its payload; `option_data_at(packet, header_index, option_type)` finds an option's data to edit.
- `ah_with_reserved(sa, packet, reserved)`: an AH packet of sa with another Reserved field, its ICV computed
  over it (RFC 4302 s2.3: the sender sets it to zero, the ICV covers it, the receiver ignores it).
"""
from __future__ import annotations

import struct

from harness.errors import ConfigError, ParseError
from harness.esp.ah import AhCodec, zero_mutable
from harness.esp.ip import IPPROTO_AH, addr_bytes, checksum, parse_ip
from harness.esp.sa import SecurityAssociation

MUTABLE_OPTION = 0x20  # RFC 8200 s4.2: the option's data may change en route (AH zeroes it: RFC 4302 s3.3.3.1.2.2)


def ipv4_with(packet: bytes, tos: int | None = None, ttl: int | None = None, ident: int | None = None,
              df: bool | None = None, src: str | None = None) -> bytes:
    """packet (IPv4) with the given header fields replaced and its header checksum recomputed."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        raise ParseError("IPv4 packet", "version", 0, "not an IPv4 packet")
    hdr = bytearray(packet[:(packet[0] & 0xF) * 4])
    if tos is not None:
        hdr[1] = tos
    if ident is not None:
        struct.pack_into("!H", hdr, 4, ident)
    if df is not None:
        flags = struct.unpack_from("!H", hdr, 6)[0]
        struct.pack_into("!H", hdr, 6, flags | 0x4000 if df else flags & ~0x4000)
    if ttl is not None:
        hdr[8] = ttl
    if src is not None:
        hdr[12:16] = addr_bytes(src)
    hdr[10:12] = b"\x00\x00"
    struct.pack_into("!H", hdr, 10, checksum(bytes(hdr)))
    return bytes(hdr) + packet[len(hdr):]


def ipv4_with_options(packet: bytes, options: bytes) -> bytes:
    """packet (IPv4 without options) with options after its 20-octet header, End of Option List padding to 32 bits,
    IHL, Total Length and the checksum fixed."""
    if len(packet) < 20 or packet[0] != 0x45:
        raise ParseError("IPv4 packet", "version/IHL", 0, "not an IPv4 packet without options")
    options += bytes(-len(options) % 4)
    if len(options) > 40:
        raise ParseError("IPv4 options", "length", 20, f"{len(options)} octets, at most 40")
    hdr = bytearray(packet[:20] + options)
    hdr[0] = 0x40 | len(hdr) // 4
    struct.pack_into("!H", hdr, 2, len(hdr) + len(packet) - 20)
    hdr[10:12] = b"\x00\x00"
    struct.pack_into("!H", hdr, 10, checksum(bytes(hdr)))
    return bytes(hdr) + packet[20:]


def ipv6_with(packet: bytes, tclass: int | None = None, flow: int | None = None, hop_limit: int | None = None,
              src: str | None = None) -> bytes:
    """packet (IPv6) with the given header fields replaced."""
    if len(packet) < 40 or packet[0] >> 4 != 6:
        raise ParseError("IPv6 packet", "version", 0, "not an IPv6 packet")
    hdr = bytearray(packet[:40])
    word = struct.unpack_from("!I", hdr)[0]
    if tclass is not None:
        word = word & ~(0xFF << 20) | tclass << 20
    if flow is not None:
        word = word & ~0xFFFFF | flow
    struct.pack_into("!I", hdr, 0, word)
    if hop_limit is not None:
        hdr[7] = hop_limit
    if src is not None:
        hdr[8:24] = addr_bytes(src)
    return bytes(hdr) + packet[40:]


def options_header(options: list[tuple[int, bytes]]) -> bytes:
    """A Hop-by-Hop / Destination Options header holding options (type, data), PadN to a multiple of 8 octets;
    its Next Header octet is 0 (with_extensions sets it)."""
    body = b"".join(bytes((t, len(d))) + d for t, d in options)
    pad = -(2 + len(body)) % 8
    if pad == 1:
        body += b"\x00"  # Pad1
    elif pad:
        body += bytes((1, pad - 2)) + bytes(pad - 2)  # PadN
    return bytes((0, (2 + len(body)) // 8 - 1)) + body


def with_extensions(packet: bytes, headers: list[tuple[int, bytes]]) -> bytes:
    """An IPv6 packet with headers [(type, header bytes), ...] (e.g. (0, options_header(...)) for Hop-by-Hop,
    (60, ...) for Destination Options) inserted after its IPv6 header, the Next Header chain and Payload Length set."""
    if len(packet) < 40 or packet[0] >> 4 != 6:
        raise ParseError("IPv6 packet", "version", 0, "not an IPv6 packet")
    chain, types = b"", [t for t, _ in headers] + [packet[6]]
    for i, (_, h) in enumerate(headers):
        chain += bytes((types[i + 1],)) + h[1:]
    body = chain + packet[40:]
    return packet[:4] + struct.pack("!HB", len(body), types[0]) + packet[7:40] + body


def option_data_at(packet: bytes, header_index: int, option_type: int) -> slice:
    """Where the data of option option_type sits in the header_index-th extension header after the IPv6 header
    (as a slice of packet); ParseError if it is not there."""
    off = 40
    for _ in range(header_index):
        off += (packet[off + 1] + 1) * 8
    end, i = off + (packet[off + 1] + 1) * 8, off + 2
    while i < end:
        t = packet[i]
        if t == 0:
            i += 1
            continue
        n = packet[i + 1]
        if t == option_type:
            return slice(i + 2, i + 2 + n)
        i += 2 + n
    raise ParseError("IPv6 options header", "option type", off,
                     f"no option {option_type:#04x} in header {header_index}")


def ah_with_reserved(sa: SecurityAssociation, packet: bytes, reserved: int) -> bytes:
    """packet (AH of sa, no ESN) with its Reserved field set to reserved and its ICV computed anew over it."""
    if sa.protocol != "ah" or sa.esn:
        raise ConfigError(f"SA {sa.spi:#010x}: ah_with_reserved takes an AH SA without ESN")
    view = parse_ip(packet, "AH packet")
    if view.proto != IPPROTO_AH:
        raise ParseError("AH packet", "next header", view.proto_pos, f"protocol {view.proto}, not AH")
    codec, off = AhCodec(sa), view.offset
    out = bytearray(packet[:view.length])
    struct.pack_into("!H", out, off + 2, reserved)
    at = off + 12 + codec.iv_size
    iv, icv_end = bytes(out[off + 12:at]), at + codec.icv_size
    data = zero_mutable(bytes(out[:off]), True) + bytes(out[off:at]) + bytes(codec.icv_size) + bytes(out[icv_end:])
    out[at:icv_end] = codec.integ.icv(data, iv)
    return bytes(out)
