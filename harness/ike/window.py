"""Message IDs, the request window and retransmission (RFC 7296 s2.1, s2.2, s2.3), driven by an injected clock.

`RequestWindow` is the requester's side: which Message IDs may be sent (up to the peer's
window size), the outstanding requests and when each is due for retransmission with
exponential back-off. `ResponseCache` is the responder's side: the next expected Message ID
and the responses it must resend, unprocessed, when a request is retransmitted.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from harness.errors import IkeError


@dataclass
class Outstanding:
    """A request awaiting its response: its datagrams, when it is next due, how often it was sent."""

    message_id: int
    datagrams: list[bytes]
    due: float
    sent: int = 1
    exchange: str = ""
    response: bytes = b""  # the datagram that answered it (completing it, when fragmented)
    sent_at: float = 0.0  # its first sending, on the window's caller's clock


@dataclass
class RequestWindow:
    """Requests we send: next Message ID, window size, outstanding requests, back-off timing."""

    window_size: int = 1
    next_id: int = 0
    timeout: float = 1.0
    backoff: float = 2.0
    max_sends: int = 5
    outstanding: dict[int, Outstanding] = field(default_factory=dict)
    last: Outstanding | None = None  # the request answered most recently

    def can_send(self) -> bool:
        """True when another request fits into the peer's window (RFC 7296 s2.3)."""
        return len(self.outstanding) < self.window_size and \
            all(self.next_id - mid < self.window_size for mid in self.outstanding)

    def allocate(self) -> int:
        """The Message ID for a new request; IkeError if the window is full."""
        if not self.can_send():
            raise IkeError(f"request window full ({self.window_size} outstanding)", "TEMPORARY_FAILURE")
        mid = self.next_id
        self.next_id = (self.next_id + 1) & 0xFFFFFFFF
        return mid

    def sent(self, mid: int, datagrams: list[bytes], now: float, exchange: str = "") -> None:
        """Record a request just sent."""
        self.outstanding[mid] = Outstanding(mid, datagrams, now + self.timeout, 1, exchange, sent_at=now)

    def answered(self, mid: int) -> Outstanding | None:
        """The request this response answers (removed; kept as `last`), or None for an unexpected Message ID."""
        done = self.outstanding.pop(mid, None)
        if done is not None:
            self.last = done
        return done

    def due(self, now: float) -> tuple[list[bytes], list[Outstanding]]:
        """(datagrams to retransmit now, requests that ran out of retransmissions and are given up)."""
        resend: list[bytes] = []
        dead: list[Outstanding] = []
        for o in list(self.outstanding.values()):
            if now < o.due:
                continue
            if o.sent >= self.max_sends:
                dead.append(self.outstanding.pop(o.message_id))
                continue
            o.sent += 1
            o.due = now + self.timeout * self.backoff ** (o.sent - 1)
            resend.extend(o.datagrams)
        return resend, dead

    def next_due(self) -> float | None:
        """The earliest retransmission time, or None when nothing is outstanding."""
        return min((o.due for o in self.outstanding.values()), default=None)


@dataclass
class ResponseCache:
    """Requests we answer: the next expected Message ID and the cached responses to resend."""

    window_size: int = 1
    next_expected: int = 0
    responses: dict[int, list[bytes]] = field(default_factory=dict)

    def classify(self, mid: int) -> str:
        """ "new" (process it), "retransmit" (resend the cached response) or "invalid" (drop; out of window)."""
        if mid in self.responses:
            return "retransmit"
        if self.next_expected <= mid < self.next_expected + self.window_size:
            return "new"
        return "invalid"

    def store(self, mid: int, datagrams: list[bytes]) -> None:
        """Cache the response to mid and advance the window past answered requests."""
        self.responses[mid] = datagrams
        while self.next_expected in self.responses:
            self.next_expected += 1
        for old in [m for m in self.responses if m < self.next_expected - self.window_size]:
            del self.responses[old]
