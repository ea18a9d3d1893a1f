"""Drive a sans-IO IKEv2 endpoint (harness.ike.endpoint.IkeEndpoint) over real UDP sockets in the lab.

The endpoint says what to send (Datagram: data, src, dst) and is fed what arrives; this module owns
the sockets' side: the source port of a Datagram picks the socket (500 or 4500), messages on 4500
carry the four-zero-octet non-ESP marker (RFC 3948 s2.2), NAT-keepalives (one 0xFF octet) are
dropped, and ESP-in-UDP datagrams on 4500 go to `esp_in` for the data plane. Timers run from
`endpoint.next_timer()` / `tick()`.
"""
from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from harness.errors import LabError

NON_ESP_MARKER = b"\0\0\0\0"
NATT_PORT = 4500
NATT_KEEPALIVE = b"\xff"


class SansIoEndpoint(Protocol):
    """What the driver needs of an IKE endpoint."""

    local: tuple[str, int]

    def process(self, data: bytes, src: tuple[str, int], dst: tuple[str, int] | None = None) -> list[Any]: ...

    def tick(self) -> list[Any]: ...

    def next_timer(self) -> float | None: ...

    def drain_events(self) -> list[Any]: ...


class SocketDriver:
    """Runs one endpoint over UDP sockets keyed by local port; collects its events."""

    def __init__(self, endpoint: SansIoEndpoint, sockets: dict[int, socket.socket],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.endpoint, self.sockets, self.clock = endpoint, dict(sockets), clock
        self.events: list[Any] = []
        self.esp_in: list[tuple[bytes, tuple[str, int]]] = []  # ESP-in-UDP received on 4500: (ESP packet, source)
        self.sent = self.received = 0
        self._stop = threading.Event()

    def send(self, datagrams: Iterable[Any]) -> None:
        """Send what the endpoint produced, each from the socket of its source port."""
        for d in datagrams:
            s = self.sockets.get(d.src[1])
            if s is None:
                raise LabError(f"driver: no socket for local port {d.src[1]} (have {sorted(self.sockets)})")
            payload = NON_ESP_MARKER + d.data if d.src[1] == NATT_PORT else d.data
            s.sendto(payload, d.dst)
            self.sent += 1

    def _receive(self, s: socket.socket, port: int) -> None:
        data, src = s.recvfrom(65535)
        src = (src[0], src[1])
        if port == NATT_PORT:
            if data == NATT_KEEPALIVE:
                return
            if not data.startswith(NON_ESP_MARKER):
                self.esp_in.append((data, src))
                return
            data = data[len(NON_ESP_MARKER):]
        self.received += 1
        self.send(self.endpoint.process(data, src, (self.endpoint.local[0], port)))

    def step(self, timeout: float) -> None:
        """Wait up to timeout for a datagram or the next timer, and handle what came."""
        due = self.endpoint.next_timer()
        if due is not None:
            timeout = max(0.0, min(timeout, due - self.clock()))
        ready, _, _ = select.select(list(self.sockets.values()), [], [], timeout)
        by_sock = {s: p for p, s in self.sockets.items()}
        for s in ready:
            self._receive(s, by_sock[s])
        if due is not None and self.clock() >= due:
            self.send(self.endpoint.tick())
        self.events += self.endpoint.drain_events()

    def run_until(self, done: Callable[[list[Any]], bool], timeout: float) -> list[Any]:
        """Step until done(events) holds; the events so far. LabError (with the events) on timeout."""
        deadline = self.clock() + timeout
        self.events += self.endpoint.drain_events()
        while not done(self.events):
            left = deadline - self.clock()
            if left <= 0:
                names = ", ".join(type(e).__name__ for e in self.events) or "none"
                raise LabError(f"driver: not done within {timeout} s (sent {self.sent}, received {self.received}; "
                               f"events: {names})")
            self.step(min(left, 0.2))
        return self.events

    def serve(self) -> threading.Thread:
        """Run in a background thread (a responder) until stop(); returns the started thread."""
        def loop() -> None:
            while not self._stop.is_set():
                self.step(0.05)

        t = threading.Thread(target=loop, name="ike-driver", daemon=True)
        t.start()
        return t

    def stop(self) -> None:
        """Stop a serve() loop."""
        self._stop.set()


def event_of(kind: type) -> Callable[[list[Any]], bool]:
    """A run_until predicate: true once an event of this type has arrived."""
    return lambda events: any(isinstance(e, kind) for e in events)
