"""Many IKE SAs at once: the built-in end establishes N, holds them while a sample carries traffic, deletes them all.

`LoadRun(pair, plan).run()` drives the built-in end of a builtin>peer pair whose connection is loaded: N
IKE_SA_INIT + IKE_AUTH exchanges (one Child SA each, all of the case's one connection, from the tester's one
address) started at `plan.rate` per second; then `plan.hold` seconds in which every second an echo request goes
through each of `plan.sample` Child SAs spread over the N; then an INFORMATIONAL Delete of each IKE SA at the same
rate. `LoadFigures` holds what it measured: setups per second, failures by notify, retransmitted datagrams, time to
establish (median and worst, from the IKE_SA_INIT request to the IKE_AUTH response taken), the SAs the peer reports
at the end of the hold, the sample's answers, the deletes, and the peer daemon's resident memory and the guest's
memory in use before and while holding, where the peer's node can be read.
"""
from __future__ import annotations

import re
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from harness.errors import LabError
from harness.ike.events import ExchangeFailed, IkeSaDeleted, IkeSaEstablished, PeerDead
from harness.ike.sa import State

SETTLE = 60.0  # bound on the answers still due after the last request of a phase (a loaded guest answers slowly)
ECHO_IDENT = 0x4C00  # echo identifiers of the sample: ECHO_IDENT + the sample's index
DAEMONS = ("charon", "pluto")
# the peer daemon's memory (VmRSS, VmHWM of charon or pluto) and the guest's (MemTotal, MemAvailable, Slab), in kB
MEMORY_SCRIPT = ('for f in /proc/[0-9]*/comm; do read c < "$f" 2>/dev/null || continue; case "$c" in '
                 + "|".join(DAEMONS) + ') grep -E "^(VmRSS|VmHWM):" "${f%/comm}/status";; esac; done; '
                 'grep -E "^(MemTotal|MemAvailable|Slab):" /proc/meminfo')


@dataclass(frozen=True)
class LoadPlan:
    """How many IKE SAs, started how fast (per second), held how long (seconds), with how many carrying traffic."""

    n: int
    rate: float
    hold: float
    sample: int


@dataclass
class Memory:
    """The peer daemon's resident memory and high-water mark, and the guest's memory in use, in KiB (None: unread)."""

    daemon_rss_kib: int | None = None
    daemon_hwm_kib: int | None = None
    guest_used_kib: int | None = None
    guest_slab_kib: int | None = None


@dataclass
class LoadFigures:
    """What one load run measured."""

    plan: LoadPlan
    established: int = 0
    setup_s: float = 0.0  # from the first IKE_SA_INIT request to the last IKE SA established
    failures: Counter[str] = field(default_factory=Counter)  # by notify (or "no answer", "unresolved", ...)
    retransmitted: int = 0  # datagrams the built-in end sent again (RFC 7296 s2.1)
    establish_s: list[float] = field(default_factory=list)
    peer_held: int | None = None  # IKE SAs with a Child SA the peer reports at the end of the hold
    peer_kernel_sas: int | None = None  # ESP SAs in the peer's kernel at the end of the hold (2 per Child SA)
    sample_sent: int = 0
    sample_answered: int = 0
    deleted: int = 0
    delete_s: float = 0.0
    memory_before: Memory = field(default_factory=Memory)
    memory_held: Memory = field(default_factory=Memory)

    @property
    def setups_per_s(self) -> float:
        """IKE SAs established per second over the setup phase."""
        return self.established / self.setup_s if self.setup_s > 0 else 0.0

    @property
    def establish_median_s(self) -> float | None:
        """The median time from IKE_SA_INIT request to established."""
        return statistics.median(self.establish_s) if self.establish_s else None

    @property
    def establish_worst_s(self) -> float | None:
        """The longest time from IKE_SA_INIT request to established."""
        return max(self.establish_s) if self.establish_s else None

    @property
    def failed(self) -> int:
        """Failures of every kind."""
        return sum(self.failures.values())

    def properties(self) -> list[tuple[str, Any]]:
        """The figures as record_property pairs (load_*)."""
        p = self.plan

        def r(v: float | None, nd: int = 4) -> float | None:
            return None if v is None else round(v, nd)

        out: list[tuple[str, Any]] = [
            ("load_n", p.n), ("load_rate_per_s", p.rate), ("load_hold_s", p.hold), ("load_sample", p.sample),
            ("load_established", self.established), ("load_setup_s", r(self.setup_s, 3)),
            ("load_setups_per_s", r(self.setups_per_s, 2)), ("load_failed", self.failed),
            ("load_failures", ", ".join(f"{k}: {v}" for k, v in sorted(self.failures.items())) or "none"),
            ("load_retransmitted", self.retransmitted), ("load_establish_median_s", r(self.establish_median_s)),
            ("load_establish_worst_s", r(self.establish_worst_s)), ("load_peer_held", self.peer_held),
            ("load_peer_kernel_esp_sas", self.peer_kernel_sas), ("load_sample_sent", self.sample_sent),
            ("load_sample_answered", self.sample_answered), ("load_deleted", self.deleted),
            ("load_delete_s", r(self.delete_s, 3))]
        for when, m in (("before", self.memory_before), ("held", self.memory_held)):
            out += [(f"load_peer_rss_kib_{when}", m.daemon_rss_kib), (f"load_peer_hwm_kib_{when}", m.daemon_hwm_kib),
                    (f"load_guest_used_kib_{when}", m.guest_used_kib), (f"load_guest_slab_kib_{when}", m.guest_slab_kib)]
        return out

    def summary(self) -> str:
        """One paragraph for the terminal."""
        p, mb, mh = self.plan, self.memory_before, self.memory_held
        med, worst = self.establish_median_s, self.establish_worst_s

        def kib(v: int | None) -> str:
            return "n/a" if v is None else f"{v / 1024:.1f} MiB"

        return (f"load N={p.n} at {p.rate:g}/s, hold {p.hold:g} s: established {self.established}/{p.n} in "
                f"{self.setup_s:.2f} s ({self.setups_per_s:.1f}/s), failures "
                f"{dict(self.failures) or 'none'}, retransmitted {self.retransmitted}, establish median "
                f"{'n/a' if med is None else f'{med * 1000:.1f} ms'} worst {'n/a' if worst is None else f'{worst * 1000:.1f} ms'}; "
                f"peer held {self.peer_held} (kernel ESP SAs {self.peer_kernel_sas}); sample "
                f"{self.sample_answered}/{self.sample_sent} echo requests answered; deleted {self.deleted} in "
                f"{self.delete_s:.2f} s; peer daemon RSS {kib(mb.daemon_rss_kib)} -> {kib(mh.daemon_rss_kib)} "
                f"(high-water {kib(mh.daemon_hwm_kib)}), guest memory used {kib(mb.guest_used_kib)} -> "
                f"{kib(mh.guest_used_kib)}")


def parse_memory(text: str) -> Memory:
    """Memory from MEMORY_SCRIPT's output (the daemon's lines first, then /proc/meminfo's)."""
    values: dict[str, int] = {}
    for key, kb in re.findall(r"^(\w+):\s+(\d+) kB", text, re.M):
        values.setdefault(key, int(kb))
    used = values["MemTotal"] - values["MemAvailable"] if "MemTotal" in values and "MemAvailable" in values else None
    return Memory(values.get("VmRSS"), values.get("VmHWM"), used, values.get("Slab"))


def spread(items: list[Any], k: int) -> list[Any]:
    """k items spread evenly over items (all of them if k >= len(items))."""
    if k >= len(items):
        return list(items)
    if k <= 0:
        return []
    return [items[(i * len(items)) // k] for i in range(k)]


class LoadRun:
    """One load run on a builtin>peer pair whose connection is loaded (see module doc)."""

    def __init__(self, pair: Any, plan: LoadPlan) -> None:
        if plan.n < 1 or plan.rate <= 0 or plan.hold < 0 or plan.sample < 0:
            raise LabError(f"load plan {plan}: n >= 1, rate > 0, hold >= 0, sample >= 0")
        self.pair, self.plan = pair, plan
        self.builtin = pair.builtin
        self.peer = next(e for e in pair.ends if not e.builtin)
        self.figures = LoadFigures(plan)
        self.started: dict[bytes, float] = {}  # SPIi -> when its IKE_SA_INIT request left

    # -- phases -----------------------------------------------------------------------------------------
    def run(self) -> LoadFigures:
        """Establish, hold with traffic, delete; the figures (never raises for the peer's failures: judge them)."""
        f = self.figures
        f.memory_before = self.memory()
        retransmitted0 = self.builtin.read(lambda ep: ep.retransmitted)
        mark = len(self.builtin.events)
        self.establish()
        self._account(mark)
        live = self._live()
        self.hold(live)
        f.retransmitted = self.builtin.read(lambda ep: ep.retransmitted) - retransmitted0
        self.delete()
        return f

    def establish(self) -> None:
        """Start N IKE SAs at the plan's rate and wait until each is established or has failed."""
        remote = (self.pair.conn.remote_addr, 500)
        driver = self.builtin.driver

        def start(ep: Any) -> tuple[bytes, float]:
            datagrams = ep.initiate(remote)
            driver.send(datagrams)
            return datagrams[0].data[:8], self.builtin.clock()

        t0 = time.monotonic()
        for i in range(self.plan.n):
            delay = t0 + i / self.plan.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            spi, at = self.builtin.read(start)
            self.started[spi] = at
        deadline = time.monotonic() + SETTLE
        while time.monotonic() < deadline and self._pending():
            time.sleep(0.2)

    def _pending(self) -> int:
        """Our IKE SAs that are neither established (with a Child SA) nor gone."""
        spis = self.started

        def count(ep: Any) -> int:
            return sum(1 for sa in ep.sas.values() if sa.spi_i in spis and sa.original_initiator
                       and not (sa.state == State.ESTABLISHED and sa.children))

        return self.builtin.read(count)

    def _live(self) -> list[tuple[bytes, int]]:
        """(SPIi, inbound SPI of its Child SA) of our established IKE SAs, in the order they were started."""
        spis = self.started

        def look(ep: Any) -> dict[bytes, int]:
            return {sa.spi_i: int.from_bytes(next(iter(sa.children)), "big") for sa in ep.sas.values()
                    if sa.spi_i in spis and sa.original_initiator and sa.state == State.ESTABLISHED and sa.children}

        found = self.builtin.read(look)
        return [(spi, found[spi]) for spi in self.started if spi in found]

    def _account(self, mark: int) -> None:
        """Established count, setup time, time to establish and failures by notify, from the events since mark."""
        f = self.figures
        events, at = self.builtin.events[mark:], self.builtin.event_times[mark:]
        done: dict[bytes, float] = {}
        for e, t in zip(events, at):
            if isinstance(e, IkeSaEstablished) and e.keys.spi_i in self.started and e.rekeyed_from is None:
                done.setdefault(e.keys.spi_i, t)
            elif isinstance(e, ExchangeFailed):
                f.failures[e.notify] += 1
            elif isinstance(e, PeerDead):
                f.failures[f"no answer to {e.exchange}"] += 1
        live = {spi for spi, _ in self._live()}
        f.established = len(live)
        f.establish_s = sorted(done[s] - self.started[s] for s in live if s in done)
        if live:
            f.setup_s = max(done[s] for s in live if s in done) - min(self.started.values())
        pending = self._pending()
        if pending:
            f.failures[f"unresolved after {SETTLE:.0f} s"] += pending
        unexplained = self.plan.n - f.established - pending - sum(f.failures.values())
        if unexplained > 0:
            f.failures["gone without a notify"] += unexplained

    def hold(self, live: list[tuple[bytes, int]]) -> None:
        """Hold the SAs for plan.hold seconds, an echo request a second through each sampled Child SA; then what the
        peer reports, its kernel's ESP SAs, the memory, and whether every SA is still standing at our end."""
        f = self.figures
        sample = spread([spi_in for _, spi_in in live], self.plan.sample)
        dst = self.pair.conn.remote_addr
        mark = len(self.builtin.events)
        t0, rounds = time.monotonic(), 0
        while True:
            rounds += 1
            for k, spi_in in enumerate(sample):
                self.builtin.echo_through(spi_in, dst, ECHO_IDENT + k, rounds)
                f.sample_sent += 1
            if time.monotonic() - t0 + 1.0 > self.plan.hold:
                break
            time.sleep(max(0.0, t0 + rounds - time.monotonic()))
        wanted = {(ECHO_IDENT + k, r) for k in range(len(sample)) for r in range(1, rounds + 1)}
        deadline = time.monotonic() + SETTLE
        while time.monotonic() < deadline and not wanted <= self._echoed():
            time.sleep(0.2)
        f.sample_answered = len(wanted & self._echoed())
        f.memory_held = self.memory()
        sas = self.pair.ike_sas(self.peer)
        f.peer_held = sum(1 for s in sas if s.children)
        try:
            f.peer_kernel_sas = sum(1 for s in self.peer.adapter.xfrm_state() if s.proto == "esp")
        except LabError:
            f.peer_kernel_sas = None
        standing = len(self._live())
        if standing < len(live):
            gone = [e.reason for e in self.builtin.events[mark:] if isinstance(e, IkeSaDeleted) and e.spi_i in self.started]
            f.failures[f"lost while held ({'; '.join(sorted(set(gone)))[:200] or 'no reason given'})"] += len(live) - standing
        if f.peer_held is not None and f.peer_held < len(live):
            f.failures["not held by the peer"] += len(live) - f.peer_held
        if f.sample_answered < len(wanted):
            f.failures["sample echo unanswered"] += len(wanted) - f.sample_answered

    def _echoed(self) -> set[tuple[int, int]]:
        return self.builtin.read(lambda ep: {(i, s) for i, s, _spi in self.builtin.echo_log})

    def delete(self) -> None:
        """An INFORMATIONAL Delete of each of our IKE SAs at the plan's rate; wait until every one is answered."""
        f = self.figures
        driver = self.builtin.driver
        spis = self.started

        def ours(ep: Any) -> list[Any]:
            return [sa for sa in ep.sas.values() if sa.spi_i in spis and sa.original_initiator
                    and sa.state == State.ESTABLISHED]

        todo = self.builtin.read(ours)
        t0 = time.monotonic()
        for i, sa in enumerate(todo):
            delay = t0 + i / self.plan.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.builtin.read(lambda ep, sa=sa: driver.send(ep.delete_ike(sa)))
        deadline = time.monotonic() + SETTLE
        left = len(todo)
        while time.monotonic() < deadline and (left := self.builtin.read(lambda ep: sum(
                1 for sa in ep.sas.values() if sa.spi_i in spis and sa.original_initiator))):
            time.sleep(0.2)
        f.delete_s = time.monotonic() - t0
        f.deleted = len(todo) - left
        if left:
            f.failures[f"delete unanswered after {SETTLE:.0f} s"] += left

    def memory(self) -> Memory:
        """The peer daemon's and the guest's memory now (all None where the node cannot be read)."""
        node = self.peer.runtime_node
        if node is None:
            return Memory()
        try:
            out = node.exec(["sh", "-c", MEMORY_SCRIPT], timeout=20)
        except LabError:
            return Memory()
        return parse_memory(getattr(out, "stdout", "") or "")


# -- the plan from a table row, the command line or the environment ------------------------------------------------
OPTIONS = {"n": int, "rate": float, "hold": float, "sample": int}  # --load-N / IPSEC_INTEROP_LOAD_N for each


def option(config: Any, key: str) -> Any:
    """--load-KEY, else the environment's IPSEC_INTEROP_LOAD_KEY, else None; LabError for a value of the wrong kind."""
    import os

    value = config.getoption(f"--load-{key}", None) if config is not None else None
    if value is None:
        value = os.environ.get(f"IPSEC_INTEROP_LOAD_{key.upper()}")
    if value is None or value == "":
        return None
    try:
        return OPTIONS[key](value)
    except ValueError:
        raise LabError(f"load: --load-{key} / IPSEC_INTEROP_LOAD_{key.upper()}: {value!r} is not a number") from None


def plan_of(row: dict[str, Any], config: Any = None) -> LoadPlan:
    """The row's plan, each value replaced by its command-line option or environment variable when given."""
    values = {k: row[k] for k in OPTIONS}
    for k in OPTIONS:
        if (v := option(config, k)) is not None:
            values[k] = v
    return LoadPlan(int(values["n"]), float(values["rate"]), float(values["hold"]), int(values["sample"]))


def load_rows(path: Any, config: Any) -> list[Any]:
    """pytest params of the load table's rows; with --load-n (or IPSEC_INTEROP_LOAD_N) one row of that N instead,
    the first row's other values (each replaced by its own option when given)."""
    import pytest

    from harness.cases.table import row_params

    rows = row_params(path, set(OPTIONS))
    n = option(config, "n")
    if n is None:
        return rows
    first = dict(rows[0].values[0])
    first.update(id=f"n{n}", n=n)
    return [pytest.param(first, id=first["id"], marks=rows[0].marks)]
