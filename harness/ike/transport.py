"""Run a sans-IO IkeEndpoint over real UDP sockets with asyncio: sockets, timers, and the SAs it negotiates.

The driver owns one UDP socket for IKE (port 500 in a lab; any port on loopback) and,
optionally, one for UDP encapsulation (RFC 3948: IKE behind a 4-octet non-ESP marker, ESP
without). It feeds datagrams to the endpoint, sends what it returns, runs `tick()` when the
endpoint's next timer is due, and keeps the Child SAs from ChildSaEstablished events in
`child_sas` (inbound SPI -> event) for the ESP/AH data plane; `on_event` sees every event.
Traffic stays on the addresses the caller binds (loopback, or a lab namespace's).
"""
from __future__ import annotations

import asyncio
from typing import Callable

from harness.errors import LabError
from harness.ike.endpoint import Datagram, IkeEndpoint
from harness.ike.events import ChildSaDeleted, ChildSaEstablished

NON_ESP_MARKER = b"\x00\x00\x00\x00"


class _Proto(asyncio.DatagramProtocol):
    def __init__(self, driver: "UdpDriver", encap: bool) -> None:
        self.driver, self.encap = driver, encap

    def datagram_received(self, data: bytes, addr) -> None:
        self.driver._received(data, (addr[0], addr[1]), self.encap)


class UdpDriver:
    """An IkeEndpoint on asyncio UDP sockets; use `async with UdpDriver(ep) as d:`."""

    def __init__(self, endpoint: IkeEndpoint, on_event: Callable[[object], None] | None = None,
                 natt_port: int | None = None) -> None:
        self.endpoint, self.on_event, self.natt_port = endpoint, on_event, natt_port
        self.child_sas: dict[int, ChildSaEstablished] = {}
        self.esp_received: list[tuple[bytes, tuple[str, int]]] = []  # UDP-encapsulated ESP for the data plane
        self._transports: dict[int, asyncio.DatagramTransport] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._changed = asyncio.Event()

    async def __aenter__(self) -> "UdpDriver":
        loop = asyncio.get_running_loop()
        host, port = self.endpoint.local
        try:
            t, _ = await loop.create_datagram_endpoint(lambda: _Proto(self, False), local_addr=(host, port))
            if port == 0:  # an ephemeral port (loopback tests): the endpoint learns it
                port = t.get_extra_info("sockname")[1]
                self.endpoint.local = (host, port)
            self._transports[port] = t
            if self.natt_port:
                t2, _ = await loop.create_datagram_endpoint(lambda: _Proto(self, True), local_addr=(host, self.natt_port))
                self._transports[self.natt_port] = t2
        except OSError as e:
            await self.__aexit__(None, None, None)
            raise LabError(f"cannot bind UDP {host}:{port}: {e.strerror}") from None
        return self

    async def __aexit__(self, *exc) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for t in self._transports.values():
            t.close()
        self._transports.clear()

    def send(self, datagrams: list[Datagram]) -> None:
        """Send datagrams from the endpoint (adding the non-ESP marker on the encapsulation port)."""
        for d in datagrams:
            t = self._transports.get(d.src[1]) or next(iter(self._transports.values()))
            data = NON_ESP_MARKER + d.data if self.natt_port and d.src[1] == self.natt_port else d.data
            t.sendto(data, d.dst)
        self._after()

    def _received(self, data: bytes, src: tuple[str, int], encap: bool) -> None:
        if encap:
            if data == b"\xff":
                return  # NAT-keepalive (RFC 3948 s2.3)
            if data[:4] != NON_ESP_MARKER:
                self.esp_received.append((data, src))
                return
            data = data[4:]
        local = (self.endpoint.local[0], self.natt_port if encap else self.endpoint.local[1])
        self.send(self.endpoint.process(data, src, local))

    def _after(self) -> None:
        for e in self.endpoint.drain_events():
            if isinstance(e, ChildSaEstablished):
                self.child_sas[e.inbound.spi] = e
            elif isinstance(e, ChildSaDeleted):
                self.child_sas.pop(e.spi_in, None)
            if self.on_event is not None:
                self.on_event(e)
        self._changed.set()
        self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        due = self.endpoint.next_timer()
        if due is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(max(0.0, due - self.endpoint.clock()), self._tick)

    def _tick(self) -> None:
        self._timer = None
        self.send(self.endpoint.tick())

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until predicate() holds after some event; LabError naming the timeout otherwise."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while not predicate():
            self._changed.clear()
            left = end - loop.time()
            if left <= 0:
                raise LabError(f"IKE driver on {self.endpoint.local}: condition not met within {timeout} s")
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except asyncio.TimeoutError:
                continue
