"""Switchable send-side deviations (BoGo-style bugs) and deterministic choices for one packet.

`Faults(...)` is passed to `Sender.protect(inner, faults=...)`. Every field is None/False by
default (meaning: behave correctly); a set field is used as given, including 0 (sequence
number 0, empty padding, pad length 0). The receiver's expected drop for each fault:

| field | effect | receiver drop |
|---|---|---|
| seq | this sequence number (64-bit; low 32 bits sent); the counter does not move | replayed / too_old if stale |
| iv | this IV (known answers) | - |
| padding | ESP: these Padding bytes instead of 1, 2, 3... (RFC 4303 s2.4); AH: these ICV padding bytes (RFC 4302 s2.6) | ESP: bad_padding if not 1, 2, 3... |
| pad_length | this Pad Length byte whatever the padding | bad_padding (or bad_icv never: ICV covers it) |
| tfc_length | this many TFC padding bytes (RFC 4303 s2.7) | - |
| next_header | this Next Header in the ESP trailer / AH header | malformed in tunnel mode |
| corrupt_icv | flip the last bit of the ICV | bad_icv |
| corrupt_ciphertext | flip a bit of the first encrypted byte | bad_icv |
| spi | this SPI on the wire (the ICV is computed over it) | unknown_spi |
| truncate | drop this many trailing bytes (IP lengths still fixed up) | malformed or bad_icv |
| seq_hi | this ESN high half in the ICV/AAD instead of the true one | bad_icv |
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Faults:
    """One packet's deviations and chosen values; None/False fields mean "do it right"."""

    seq: int | None = None
    iv: bytes | None = None
    padding: bytes | None = None
    pad_length: int | None = None
    tfc_length: int | None = None
    next_header: int | None = None
    corrupt_icv: bool = False
    corrupt_ciphertext: bool = False
    spi: int | None = None
    truncate: int | None = None
    seq_hi: int | None = None


NO_FAULTS = Faults()
