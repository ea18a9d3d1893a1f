"""A steady stream of echo requests from the built-in end, for cases that change the SAs under traffic (a rekey).

`EchoStream` sends one echo request every `interval` seconds from a thread of its own, each through the Child SA
the built-in end would send through at that moment (BuiltinEnd.stream_echo: across a rekey the old SA until the new
one may be used, RFC 7296 s2.8), and notes the outbound SPI each went through. The answers are the echo replies the
built-in end decrypted and verified (BuiltinEnd.echo_log, with the inbound SPI each came through), so a count of the
stream rests on packets that opened, never on a ping's exit status.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

STREAM_IDENT = 0x5354  # the echo identifier of a stream's requests ("ST")
INTERVAL = 0.05  # seconds between two requests


@dataclass
class StreamCount:
    """What a stream saw: each request's sequence number -> outbound SPI, each answered one -> inbound SPI."""

    sent: dict[int, int] = field(default_factory=dict)
    answered: dict[int, int] = field(default_factory=dict)

    @property
    def unsendable(self) -> list[int]:
        """The sequence numbers of requests the built-in end could not send: it held no Child SA (outbound SPI 0)."""
        return sorted(q for q, spi in self.sent.items() if spi == 0)

    @property
    def lost(self) -> list[int]:
        """The sequence numbers of requests never answered."""
        return sorted(set(self.sent) - set(self.answered))

    def by_sa(self) -> dict[str, dict[str, int]]:
        """Requests per outbound SPI and answers per inbound SPI (hex), for the case's record."""
        out: dict[str, dict[str, int]] = {"sent": {}, "answered": {}}
        for kind, spis in (("sent", self.sent.values()), ("answered", self.answered.values())):
            for spi in spis:
                key = f"0x{spi:08x}"
                out[kind][key] = out[kind].get(key, 0) + 1
        return out


class EchoStream:
    """Echo requests from the built-in end to dst every interval until stopped (see module doc)."""

    def __init__(self, builtin: Any, dst: str, ident: int = STREAM_IDENT, interval: float = INTERVAL) -> None:
        self.builtin, self.dst, self.ident, self.interval = builtin, dst, ident, interval
        self.count = StreamCount()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._from = 0
        self.error: BaseException | None = None

    def start(self) -> None:
        """Start sending (sequence numbers from 1); answers count from here (a pooled end keeps earlier cases' log)."""
        self._from = len(self.builtin.echo_log)
        self._thread = threading.Thread(target=self._run, name="echo-stream", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        seq = 0
        while not self._stop.is_set():
            seq += 1
            try:
                self.count.sent[seq] = self.builtin.stream_echo(self.dst, self.ident, seq)
            except BaseException as e:  # noqa: BLE001 - kept and raised by stop() in the case's thread
                self.error = e
                return
            self._stop.wait(self.interval)

    def stop(self) -> StreamCount:
        """Stop sending; the count so far (answers still in flight are read again by `answered`)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self.error is not None:
            raise self.error
        return self.answered()

    def answered(self) -> StreamCount:
        """The count with the answers received until now."""
        for ident, seq, spi in self.builtin.echo_log[self._from:]:
            if ident == self.ident and seq in self.count.sent:
                self.count.answered.setdefault(seq, spi)
        return self.count
