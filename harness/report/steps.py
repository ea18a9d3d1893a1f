"""The steps of a case for its Allure result: each IKE exchange the built-in end saw, each packet batch, each check.

A case's pieces record Step values on the pytest item (`record`): the pair fixture the built-in end's IKE events
(`exchange_steps`, named as RFC 7296 names the exchanges) and the pair's packet batches, harness.report.checks.should
each SHOULD it judged, the fixture the wire check. At teardown the collector reads them (`recorded`, in time order)
and allure_meta.enrich writes them into the test's Allure result as TestStepResult objects; nothing here uses
allure.step (its context is per thread, and the built-in end's events come from its own thread).

An exchange step records what happened on the wire, refusals and unanswered requests included, and is passed:
whether that was right is the case's to judge (a case that expects a refusal passes), so verdicts live in the
check steps and in the step of the fault that ended the case (collector.fault_step), never in a green test's
exchange steps.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

PASSED, FAILED, BROKEN = "passed", "failed", "broken"
_STEPS_ATTR = "ipsi_steps"  # the list on the pytest item (an attribute: items of every kind take one)
SAME_TURN = 0.5  # s: a Child SA reported this soon after its IKE SA came with it (the built-in end's loop reports both)


@dataclass(frozen=True)
class Step:
    """One step of a case: its name, status (passed, failed, broken), start and stop in ms since the epoch."""

    name: str
    status: str
    start: int
    stop: int
    parameters: tuple[tuple[str, str], ...] = ()


def now_ms() -> int:
    """The wall clock in ms since the epoch (Allure's time unit)."""
    return int(time.time() * 1000)


def record(item: Any, steps: Iterable[Step]) -> None:
    """Append steps to what the pytest item (or a fixture request: its node) carries for its Allure result."""
    item = getattr(item, "node", item)
    found = getattr(item, _STEPS_ATTR, None)
    if found is None:
        found = []
        setattr(item, _STEPS_ATTR, found)
    found.extend(steps)


def recorded(item: Any) -> list[Step]:
    """The steps recorded on a pytest item, in time order (start, then stop; the order recorded breaks ties), a run of
    the same check (name, status and parameters) one step "... (N times)" spanning the run (a SHOULD judged per packet)."""
    out: list[tuple[Step, int]] = []
    for st in sorted(getattr(getattr(item, "node", item), _STEPS_ATTR, None) or [], key=lambda s: (s.start, s.stop)):
        last, n = out[-1] if out else (None, 0)
        if last is not None and (last.name, last.status, last.parameters) == (st.name, st.status, st.parameters):
            out[-1] = (Step(last.name, last.status, last.start, max(last.stop, st.stop), last.parameters), n + 1)
        else:
            out.append((st, 1))
    return [st if n == 1 else Step(f"{st.name} ({n} times)", st.status, st.start, st.stop, st.parameters) for st, n in out]


def check_step(name: str, ok: bool, start: int | None = None, stop: int | None = None,
               parameters: Sequence[tuple[str, str]] = (), status: str | None = None) -> Step:
    """A check as a step: passed when ok, else failed (or the status given, e.g. broken); now when no times."""
    stop = now_ms() if stop is None else stop
    return Step(name, status or (PASSED if ok else FAILED), stop if start is None else start, stop, tuple(parameters))


def _spi(spi: int) -> str:
    return f"{spi:08x}"


def _ike(spi_i: bytes, spi_r: bytes) -> str:
    return f"IKE SA {spi_i.hex()}/{spi_r.hex()}"


def _child(e: Any) -> str:
    """"ESP c0ffee01/c0ffee02" for a ChildSaEstablished (the built-in end's inbound SPI, then outbound)."""
    return f"{e.inbound.protocol.upper()} {_spi(e.inbound.spi)}/{_spi(e.outbound.spi)}"


def _by(e: Any) -> str:
    """" (request by the built-in end)" or " (request by the peer)" for an SA's event that says who asked; else ""."""
    we = getattr(e, "we_initiated", None)
    return "" if we is None else f" (request by the {'built-in end' if we else 'peer'})"


def _describe(e: Any, initiator: str, responder: str) -> str | None:
    """The name of one built-in end's event as an exchange step; None for events a step does not show alone."""
    kind = type(e).__name__
    if kind == "IkeSaEstablished":
        k = e.keys
        if e.rekeyed_from is not None:
            old = e.rekeyed_from
            return f"CREATE_CHILD_SA rekey {_ike(old[:8], old[8:])} -> {k.spi_i.hex()}/{k.spi_r.hex()}{_by(e)}"
        auth = f", {e.peer_auth}" if e.peer_auth else ""
        return f"IKE_SA_INIT + IKE_AUTH ({initiator} -> {responder}): {_ike(k.spi_i, k.spi_r)}, peer ID {e.peer_id}{auth}"
    if kind == "ChildSaEstablished":
        if e.rekeyed_spi is not None:
            return f"CREATE_CHILD_SA rekey Child SA {_spi(e.rekeyed_spi)} -> {_child(e)}{_by(e)}"
        return f"CREATE_CHILD_SA new Child SA {_child(e)}{_by(e)}"
    if kind == "ChildlessIkeSa":
        return f"IKE_AUTH without a Child SA (RFC 6023; {'we' if e.initiator else 'the peer'} initiated)"
    if kind == "Informational":
        what = ", ".join("Delete" if p == "D" else f"N({p})" for p in e.payloads)
        if e.asked_by_us:
            return f"INFORMATIONAL (request by the built-in end, Message ID {e.message_id}), answer: {what or 'empty'}"
        return f"INFORMATIONAL (request by the peer, Message ID {e.message_id}): {what or 'empty (liveness check)'}"
    if kind in _GONE:
        return f"{_gone(e)} removed"
    if kind == "ExchangeFailed":
        side = "received" if e.received else "sent"
        return f"{e.exchange} refused: N({e.notify}) {side}: {e.message}"
    if kind == "PeerDead":
        return f"{e.exchange} (Message ID {e.message_id}): no answer after every retransmission"
    if kind == "RequestIgnored":
        return f"{e.exchange} request (Message ID {e.message_id}) left unanswered on purpose"
    if kind == "KeRetry":
        return f"{e.exchange}: N(INVALID_KE_PAYLOAD), again with KE group {e.group}"
    if kind == "CookieDemanded":
        return f"IKE_SA_INIT answered with N(COOKIE){' (stale cookie)' if e.stale else ''}, KE group {e.group}"
    if kind == "CookieRetry":
        return "IKE_SA_INIT: N(COOKIE) received, again with the cookie"
    if kind == "NatDetected":
        return f"NAT detection: local behind NAT {e.local_behind_nat}, remote behind NAT {e.remote_behind_nat}"
    if kind == "ProbeSent":
        return f"request bent on purpose sent (Message ID {e.message_id})"
    if kind == "ProbeAnswered":
        return (f"bent request (Message ID {e.message_id}) answered {'protected' if e.protected else 'unprotected'}: "
                f"{', '.join(e.payloads) or 'empty'}")
    if kind == "ResentAnswered":
        same = "the same response" if e.first == e.again else "another response"
        return f"{e.exchange} request resent (Message ID {e.message_id}): {same}"
    if kind == "FragmentsSent":
        return (f"{e.exchange} {'response' if e.response else 'request'} (Message ID {e.message_id}) sent in "
                f"{len(e.sizes)} fragments")
    if kind == "FragmentReceived":
        return (f"{e.exchange} {'response' if e.response else 'request'} (Message ID {e.message_id}) fragment "
                f"{e.number}/{e.total} received")
    return None


_GONE = ("ChildSaDeleted", "IkeSaDeleted")


def _gone(e: Any) -> str:
    """"Child SA ESP c0ffee01/c0ffee02" or "IKE SA 1a2b.../3c4d... (deleted by us)" for a removal event."""
    if type(e).__name__ == "ChildSaDeleted":
        return f"Child SA {e.protocol.upper()} {_spi(e.spi_in)}/{_spi(e.spi_out)}"
    return f"{_ike(e.spi_i, e.spi_r)} ({e.reason})"


def _folded(events: Sequence[Any], times_ms: Sequence[int], i: int, t: int) -> int:
    """How many events from index i are SA removals reported within SAME_TURN of t (an INFORMATIONAL's Deletes)."""
    n = 0
    while i + n < len(events) and type(events[i + n]).__name__ in _GONE and int(times_ms[i + n]) - t <= SAME_TURN * 1000:
        n += 1
    return n


def exchange_steps(events: Sequence[Any], times_ms: Sequence[int], initiator: str, responder: str,
                   to_ms: Callable[[float], int] | None = None) -> list[Step]:
    """The built-in end's events (with their times in ms since the epoch, index for index) as steps: an IKE SA made
    by IKE_SA_INIT + IKE_AUTH takes the Child SA reported with it into its step, an INFORMATIONAL the SAs it removed
    ("INFORMATIONAL Delete ..."); initiator and responder name the case's ends for the IKE_SA_INIT exchange. A step
    starts at its event's `started` (on the clock to_ms converts) where the event has one: IKE_SA_INIT, or a request
    of ours; else it is a point at the event."""
    out: list[Step] = []
    i = 0
    while i < len(events):
        e, t = events[i], int(times_ms[i])
        name = _describe(e, initiator, responder)
        i += 1
        if name is None:
            continue
        stop = t
        started = getattr(e, "started", None)
        if to_ms is not None and started is not None:
            t = min(t, to_ms(started))
        if type(e).__name__ == "IkeSaEstablished" and e.rekeyed_from is None and i < len(events) \
                and type(events[i]).__name__ == "ChildSaEstablished" and events[i].rekeyed_spi is None \
                and int(times_ms[i]) - t <= SAME_TURN * 1000:
            name, stop = f"{name}, Child SA {_child(events[i])}", int(times_ms[i])
            i += 1
        elif type(e).__name__ == "Informational" and (n := _folded(events, times_ms, i, t)):
            who = "built-in end" if e.asked_by_us else "peer"
            gone = ", ".join(_gone(x) for x in events[i:i + n])
            name, stop = f"INFORMATIONAL Delete {gone} (request by the {who}, Message ID {e.message_id})", int(times_ms[i + n - 1])
            i += n
        out.append(Step(name, PASSED, t, stop))
    return out


def _payloads(r: Any) -> str:
    """An IKE message's payloads for a step name (the inner ones once decrypted), at most 160 characters."""
    text = " ".join(r.payloads) + (" (no keys for this IKE SA)" if r.status == "unknown_spi" else "")
    return text if len(text) <= 160 else text[:157] + "..."


def wire_exchange_steps(messages: Sequence[tuple[int, Any]], names: Mapping[str, str]) -> list[Step]:
    """Each IKE exchange seen on the wire, for a case without the built-in end: (capture time in ns, IkeResult) pairs
    made into one step per request and its first response, named by exchange, ends (names maps addresses to them) and
    Message ID, with both messages' payloads. A request seen again with the same payloads is a retransmission (or the
    same datagram on another segment); an IKE_SA_INIT again with others (a COOKIE, another KE) is a new exchange."""
    steps: list[Step] = []
    open_: dict[tuple, tuple[int, Any]] = {}  # (SPIi, Message ID, requester is the original initiator) -> request
    last: dict[tuple, list[str]] = {}  # the payloads of each key's latest request
    for ts, r in sorted(messages, key=lambda m: m[0]):
        if r.message_id is None or not r.exchange or (r.fragment and not r.reassembled_from):
            continue  # undecodable, or a fragment whose message another frame completes
        key = (r.spi_i, r.message_id, r.initiator != r.response)
        if not r.response:
            if key not in open_ and last.get(key) != r.payloads:
                open_[key] = (ts, r)
            last[key] = r.payloads
            continue
        if key not in open_:
            continue  # an answer to a retransmission, or seen again on another segment
        t0, q = open_.pop(key)
        steps.append(Step(_wire_name(q, r, names), PASSED, t0 // 1_000_000, ts // 1_000_000))
    steps += [Step(_wire_name(q, None, names), PASSED, t0 // 1_000_000, t0 // 1_000_000) for t0, q in open_.values()]
    return sorted(steps, key=lambda st: st.start)


def _wire_name(q: Any, r: Any, names: Mapping[str, str]) -> str:
    """A wire exchange's step name: request q and its response r (None: unanswered)."""
    sa = r or q
    answer = f"response [{_payloads(r)}]" if r is not None else "no response on the wire"
    return (f"{q.exchange} {names.get(q.src, q.src)} -> {names.get(q.dst, q.dst)} (Message ID {q.message_id}, IKE SA "
            f"{sa.spi_i.hex()}/{sa.spi_r.hex()}): request [{_payloads(q)}], {answer}")


def epoch_ms(clock: Callable[[], float]) -> Callable[[float], int]:
    """A converter from times on clock (e.g. time.monotonic, the built-in end's event_times) to ms since the epoch."""
    offset = time.time() - clock()
    return lambda t: int((t + offset) * 1000)


def to_allure(steps: Iterable[Step]) -> list[Any]:
    """allure_commons TestStepResult objects of steps (allure-pytest must be installed)."""
    from allure_commons.model2 import Parameter, TestStepResult  # noqa: PLC0415 - only with allure-pytest active

    return [TestStepResult(name=s.name, status=s.status, start=s.start, stop=s.stop,
                           parameters=[Parameter(name=k, value=v) for k, v in s.parameters]) for s in steps]
