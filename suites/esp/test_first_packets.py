"""Protection from the first moment (RFC 4301 s5): how long after the IKE_AUTH or CREATE_CHILD_SA response each peer's
SAs carry traffic.

The built-in end sends protected echo requests to the peer from the moment it installs a new Child SA, that is, it
sends (as responder) or receives (as initiator) the IKE_AUTH response, or the CREATE_CHILD_SA response of a Child
SA rekey, one every INTERVAL through the new SA, until one is answered. The delay from that moment to the first
answer is measured and recorded (record_property `first_answer_s`, and `first_packets.json` beside the capture),
never judged as a bound: a loaded host slows the guests. Requests that reach the peer before its kernel holds the
inbound SA are dropped there (the wire check still holds each to its sequence number); what is judged is that every
reply comes back protected: a reply in clear at any moment after the response, before the peer's outbound SA or
policy is in place, is FAILED by the wire check's clear-text check (harness.tools.cleartext), which every case runs.
The built-in end is the initiator of the exchange in builtin>peer and its responder in peer>builtin.
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from harness.cases.pair import WAIT
from harness.errors import PeerFault
from harness.ike.events import ChildSaEstablished

pytestmark = [pytest.mark.lab, pytest.mark.root]

INTERVAL = 0.02  # seconds between echo requests until one is answered
IDENT = 0x4650  # echo identifier of these requests ("FP")


@pytest.mark.ends("builtin>peer", "peer>builtin")
@pytest.mark.rfc(4301, "5", "MUST")
@pytest.mark.parametrize("exchange", ["IKE_AUTH", "CREATE_CHILD_SA"])
def test_the_peer_protects_its_replies_from_the_response_on(pair, exchange, record_property):
    conn = pair.connection(child_proposals=["aes128gcm16"])
    if exchange == "IKE_AUTH":
        negotiate, new = (lambda: pair.establish(conn)), (lambda e: True)
    else:
        pair.establish(conn)
        negotiate, new = (lambda: pair.rekey("child", by="initiator")), (lambda e: e.rekeyed_spi is not None)
    sent, delay = _first_answer(pair, negotiate, new)
    role = "responder" if pair.responder is pair.builtin_end else "initiator"
    record_property("first_answer_s", round(delay, 4))
    record_property("echo_requests_before_first_answer", sent)
    pair.directory.mkdir(parents=True, exist_ok=True)
    (pair.directory / "first_packets.json").write_text(json.dumps(
        {"exchange": exchange, "built_in_role": role, "first_answer_s": round(delay, 4), "echo_requests_sent": sent,
         "interval_s": INTERVAL}, indent=1) + "\n")
    pair.terminate()


def _first_answer(pair: Any, negotiate: Callable[[], Any], new: Callable[[ChildSaEstablished], bool]) -> tuple[int, float]:
    """Run negotiate in a thread; from the moment the built-in end installs the Child SA that new accepts, echo
    requests through it until one is answered: (requests sent, seconds from that moment to the answer). What
    negotiate raised is raised here; PeerFault if no request is answered within WAIT."""
    end = pair.builtin
    mark = len(end.events)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            negotiate()
        except BaseException as e:  # noqa: BLE001 - raised again in the case's thread
            failure.append(e)

    negotiation = threading.Thread(target=run, name="first-packets-negotiation", daemon=True)
    negotiation.start()
    installed = _installed(end, mark, negotiation, new)
    sent, answered = _until_answered(end, pair.address(pair.peer, 4), installed) if installed else (0, None)
    negotiation.join(WAIT)
    if failure:
        raise failure[0]
    if installed is None:
        raise PeerFault("the negotiation ended without a new Child SA at the built-in end", pair.requirement)
    if answered is None:
        raise PeerFault(f"{pair.peer.name} answered none of {sent} echo requests through the new Child SA within "
                        f"{WAIT:.0f} s of the response", pair.requirement)
    return sent, answered - installed


def _installed(end: Any, mark: int, negotiation: threading.Thread, new: Callable[[ChildSaEstablished], bool]) -> float | None:
    """The moment the built-in end installs a Child SA that new accepts, or None if the negotiation ended without one."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        ended = not negotiation.is_alive()  # read before the events: a Child SA installed just before the end counts
        if any(isinstance(e, ChildSaEstablished) and new(e) for e in end.events[mark:]):
            return time.monotonic()
        if ended:
            return None
        time.sleep(0.002)
    return None


def _until_answered(end: Any, dst: str, since: float) -> tuple[int, float | None]:
    """Echo requests one every INTERVAL until one is answered; (requests sent, the moment of the first answer)."""
    sent = 0
    while time.monotonic() - since < WAIT:
        sent += 1
        end.send_echo(dst, IDENT, sent)
        step = time.monotonic() + INTERVAL
        while time.monotonic() < step:
            if any(end.echo_replied(IDENT, s) for s in range(max(1, sent - 3), sent + 1)):
                return sent, time.monotonic()
            time.sleep(0.002)
    return sent, None
