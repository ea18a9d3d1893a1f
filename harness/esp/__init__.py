"""The built-in ESP (RFC 4303) and AH (RFC 4302) data plane: sans-IO, bytes in, bytes out.

Public API::

    sa = SecurityAssociation(protocol="esp", spi=0x1000, src="198.18.0.1", dst="198.18.0.2",
                             mode="tunnel", encryption="ENCR_AES_GCM_16", encryption_key=key_and_salt,
                             integrity=None, integrity_key=b"", esn=False, udp_encap=None)
    sa.to_json() -> {"protocol", "spi": "0x..", "src", "dst", "mode", "encryption", "encryption_key",
                     "integrity", "integrity_key", "esn"}     # the project's keys-file form
    SecurityAssociation.from_keys(IpsecSaKeys, udp_encap=None); sa.to_keys() -> IpsecSaKeys

    tx = Sender(sa, seq=1, random=os.urandom, history=16)
    tx.protect(inner_ip_packet: bytes, faults: Faults | None = None) -> bytes   # complete outer IP packet
    tx.dummy(length=0, faults=None) -> bytes      # ESP Next Header 59 (RFC 4303 s2.6)
    tx.replay(back=1) -> bytes                    # an earlier packet, byte for byte
    tx.next_seq                                   # the next sequence number (64-bit)

    rx = Receiver(sa, window=64, check_padding=True)
    rx.unprotect(outer: bytes) -> Unprotected(inner, next_header, seq, spi, pad_length, tfc_length); .dummy
    rx.counters: dict[reason, int]  # reasons: DROP_REASONS
    rx.accepted, rx.dummies
    rx.window: ReplayWindow(size=64, esn=False, top=0): check(seq_low) -> seq, accept(seq), infer(seq_low), seen(seq);
               callers may set rx.window.top or replace rx.window (every path reads it per packet)

    db = SaDatabase(); rx = db.add(sa, window=64); db.unprotect(outer); db.counters

    Faults(seq=, iv=, padding=, pad_length=, tfc_length=, next_header=, corrupt_icv=, corrupt_ciphertext=,
           spi=, truncate=, seq_hi=)   # None/False = correct; 0 is a value (seq 0 is sent as 0);
                                       # padding is the ICV padding for AH; see harness.esp.faults for the drops

    EspCodec(sa).seal(seq, payload, next_header, iv=None, padding=None, ...) -> ESP bytes (SPI .. ICV)
    EspCodec(sa).open(esp_bytes, seq) -> Opened(payload, next_header, pad_length)
    udpencap: frame_ike(msg), unframe_ike(datagram), classify(datagram), udp_header(...)

Drops raise harness.errors.PacketDropped(reason, message, spi, seq) (MalformedPacket, also a
ParseError naming field and offset, for reason "malformed") and are counted per reason.
Nothing here mutates its input. Combined-mode ESP SAs over IPv4 without ESN or UDP get
per-SA closures (harness.esp.fastpath) in place of protect/unprotect on the instance; any
packet they do not handle in full goes through the general path, with identical results.
Outer packets are complete IP packets; UDP-encapsulated ones carry their UDP header (port
4500 by convention, `udp_encap=(4500, 4500)`). AH aligns to 4 bytes over IPv4 and 8 over
IPv6 unless `ah_align=` says otherwise (Linux wants 8 over IPv4 unless its state has
`flag align4`); receivers take any alignment the Payload Len states.
"""
from harness.errors import MalformedPacket, PacketDropped, SequenceNumberOverflow
from harness.esp.ah import AhCodec, zero_mutable
from harness.esp.cipher import EncrContext, IntegContext
from harness.esp.esp import EspCodec, Opened
from harness.esp.faults import Faults
from harness.esp.receiver import DROP_REASONS, Receiver, Unprotected
from harness.esp.replay import ReplayWindow
from harness.esp.sa import SecurityAssociation
from harness.esp.sad import SaDatabase
from harness.esp.sender import Sender
from harness.esp.udpencap import NAT_T_PORT, classify, frame_ike, udp_header, unframe_ike

__all__ = ["SecurityAssociation", "Sender", "Receiver", "Unprotected", "SaDatabase", "Faults", "ReplayWindow",
           "EspCodec", "Opened", "AhCodec", "zero_mutable", "EncrContext", "IntegContext", "DROP_REASONS",
           "PacketDropped", "MalformedPacket", "SequenceNumberOverflow", "NAT_T_PORT", "classify", "frame_ike",
           "unframe_ike", "udp_header"]
