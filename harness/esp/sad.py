"""The inbound SA database: (protocol, SPI, destination) -> Receiver (RFC 4301 s4.1, s4.4.2).

`SaDatabase.add(sa, window)` registers an inbound SA; `unprotect(outer)` finds its receiver
from the packet (ESP, AH, or ESP in UDP) and counts "unknown_spi" itself when none matches.
"""
from __future__ import annotations

import struct

from harness.errors import ConfigError, MalformedPacket, PacketDropped, ParseError
from harness.esp.ip import IPPROTO_AH, IPPROTO_ESP, IPPROTO_UDP, addr_bytes, addr_text, parse_ip
from harness.esp.receiver import DROP_REASONS, Receiver, Unprotected, malformed_from
from harness.esp.sa import SecurityAssociation
from harness.esp.udpencap import NON_ESP_MARKER

_PROTO = {IPPROTO_ESP: "esp", IPPROTO_AH: "ah"}


class SaDatabase:
    """Inbound SAs by (protocol, SPI, packed destination); counters for drops before an SA is found."""

    def __init__(self) -> None:
        self.receivers: dict[tuple[str, int, bytes], Receiver] = {}
        self.counters: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)

    def add(self, sa: SecurityAssociation, window: int = 64, check_padding: bool = True) -> Receiver:
        """Register sa as inbound and return its Receiver; ConfigError if (protocol, SPI, dst) is taken."""
        key = (sa.protocol, sa.spi, addr_bytes(sa.dst))
        if key in self.receivers:
            raise ConfigError(f"SA database: {sa.protocol} SPI {sa.spi:#010x} to {sa.dst} is already registered")
        rx = self.receivers[key] = Receiver(sa, window, check_padding)
        return rx

    def remove(self, sa: SecurityAssociation) -> None:
        """Forget an inbound SA (e.g. after a rekey)."""
        self.receivers.pop((sa.protocol, sa.spi, addr_bytes(sa.dst)), None)

    def lookup(self, outer: bytes) -> Receiver:
        """The receiver for outer; PacketDropped ("unknown_spi" or "malformed"), counted here, if none."""
        try:
            return self._lookup(outer)
        except PacketDropped as e:
            self.counters[e.reason] += 1
            raise

    def _lookup(self, outer: bytes) -> Receiver:
        try:
            view = parse_ip(outer, "outer packet")
        except ParseError as e:
            raise malformed_from(e) from None
        off, proto = view.offset, view.proto
        if proto == IPPROTO_UDP:
            off += 8
            if view.length - off < 8 or outer[off:off + 4] == NON_ESP_MARKER:
                raise MalformedPacket("UDP payload", "ESP header", off, "not UDP-encapsulated ESP")
            proto = IPPROTO_ESP
        name = _PROTO.get(proto)
        if name is None:
            raise MalformedPacket("outer packet", "protocol", view.proto_pos, f"{proto} is neither ESP, AH nor UDP")
        if view.length - off < 8:
            raise MalformedPacket(name.upper(), "header", off, "too short for an SPI")
        spi = struct.unpack_from("!I", outer, off + (4 if name == "ah" else 0))[0]
        rx = self.receivers.get((name, spi, view.dst))
        if rx is None:
            raise PacketDropped("unknown_spi", f"no inbound {name} SA with SPI {spi:#010x} to {addr_text(view.dst)}", spi)
        return rx

    def unprotect(self, outer: bytes) -> Unprotected:
        """Find the SA of outer and unprotect it with that SA's receiver."""
        return self.lookup(outer).unprotect(outer)
