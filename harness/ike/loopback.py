"""Drive sans-IO IKEv2 endpoints back to back in memory: a fake clock, seeded RNGs and a wire that can drop or bend.

Used by the unit tests and the benchmark: `Wire(a, b).run(datagrams)` delivers datagrams by
destination address until both sides are quiet, recording every datagram; a `tamper` hook
sees each one and may drop it (None), replace it, or duplicate it (a list).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable

from harness.ike.endpoint import Datagram, IkeEndpoint


@dataclass
class FakeClock:
    """A clock that moves only when told to."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds


def seeded_rng(seed: int) -> Callable[[int], bytes]:
    """A deterministic RNG with os.urandom's signature."""
    r = random.Random(seed)
    return r.randbytes


Tamper = Callable[[Datagram], "Datagram | list[Datagram] | None"]


@dataclass
class Wire:
    """Two endpoints joined by an in-memory wire keyed by destination IP address."""

    a: IkeEndpoint
    b: IkeEndpoint
    tamper: Tamper | None = None
    log: list[Datagram] = field(default_factory=list)

    def _target(self, d: Datagram) -> IkeEndpoint:
        return self.a if d.dst[0] == self.a.local[0] else self.b

    def run(self, datagrams: list[Datagram], max_steps: int = 200) -> int:
        """Deliver datagrams and every answer until none is left; the number delivered."""
        queue, n = [(d, False) for d in datagrams], 0
        while queue:
            d, bent = queue.pop(0)
            if self.tamper is not None and not bent:
                t = self.tamper(d)
                if t is None:
                    self.log.append(d)
                    continue
                if isinstance(t, list):
                    queue = [(x, True) for x in t[1:]] + queue
                    d = t[0]
                else:
                    d = t
            self.log.append(d)
            n += 1
            if n > max_steps:
                raise RuntimeError(f"wire: more than {max_steps} datagrams; the endpoints loop")
            queue += [(x, False) for x in self._target(d).process(d.data, d.src, d.dst)]
        return n

    def tick(self) -> int:
        """Run both endpoints' timers and deliver what they send."""
        return self.run(self.a.tick() + self.b.tick())
