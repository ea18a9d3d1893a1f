"""The receiver's anti-replay window (RFC 4303 s3.4.3 and Appendix A; RFC 4302 s3.4.3).

`ReplayWindow(size, esn)`: `check(seq_low) -> seq` infers the full sequence number (the
high-order 32 bits by RFC 4303 Appendix A2.2 when `esn`) and raises PacketDropped
("replayed" or "too_old") without changing state; `accept(seq)` marks it received and
is called only once the ICV has verified (RFC 4303 s3.4.3). The bitmap is a Python int:
bit i stands for sequence number `top - i`. A window of 0 packets is the check turned off (s3.4.3: the receiver
may disable it): every number is taken.
"""
from __future__ import annotations

from harness.errors import ConfigError, PacketDropped

_M32 = 0xFFFFFFFF


class ReplayWindow:
    """A sliding window of `size` sequence numbers ending at `top`, the highest accepted."""

    __slots__ = ("size", "esn", "top", "bits", "_mask")

    def __init__(self, size: int = 64, esn: bool = False, top: int = 0) -> None:
        if size < 0:
            raise ConfigError(f"replay window size {size} is below 0")
        self.size, self.esn, self.top, self.bits = size, esn, top, 0
        self._mask = (1 << size) - 1

    def infer(self, seq_low: int) -> int:
        """The full sequence number a received low-order 32 bits stand for (RFC 4303 A2.2 when ESN, else itself)."""
        if not self.esn:
            return seq_low
        top, w = self.top, self.size
        tl, th = top & _M32, top >> 32
        if tl >= w - 1:  # Case A: the window lies within one sequence-number subspace
            return (th << 32 | seq_low) if seq_low >= tl - w + 1 else ((th + 1) << 32 | seq_low)
        # Case B: the window spans two subspaces
        return ((th - 1) << 32 | seq_low) if seq_low >= ((tl - w + 1) & _M32) else (th << 32 | seq_low)

    def check(self, seq_low: int, spi: int | None = None) -> int:
        """The full sequence number for seq_low; PacketDropped "too_old" or "replayed" when the window rejects it."""
        seq = self.infer(seq_low)
        top = self.top
        if seq > top or not self.size:  # size 0: the check is off
            return seq
        if seq <= 0:
            raise PacketDropped("too_old", f"sequence number {seq} is never sent (RFC 4303 s3.3.3)", spi, seq)
        diff = top - seq
        if diff >= self.size:
            raise PacketDropped("too_old", f"sequence number {seq} is left of the window [{top - self.size + 1}, {top}]", spi, seq)
        if self.bits >> diff & 1:
            raise PacketDropped("replayed", f"sequence number {seq} was already received", spi, seq)
        return seq

    def accept(self, seq: int) -> None:
        """Mark seq received (after its ICV verified), sliding the window when seq is new."""
        top = self.top
        if not self.size:
            self.top = max(top, seq)
        elif seq > top:
            shift = seq - top
            self.bits = ((self.bits << shift) | 1) & self._mask if shift < self.size else 1
            self.top = seq
        else:
            self.bits |= 1 << (top - seq)

    def seen(self, seq: int) -> bool:
        """True when seq is inside the window and marked received."""
        diff = self.top - seq
        return 0 <= diff < self.size and bool(self.bits >> diff & 1)
