"""What the sans-IO endpoint hands its driver to send: one UDP payload and its addresses."""
from __future__ import annotations

from dataclasses import dataclass

from harness.ike.sa import Address


@dataclass(frozen=True)
class Datagram:
    """One UDP payload to send (IKE message bytes, without a non-ESP marker) and its addresses."""

    data: bytes
    src: Address
    dst: Address
