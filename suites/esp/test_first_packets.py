"""Protection from the first moment (RFC 4301 s5): how long after the IKE_AUTH response each peer's SAs carry traffic.

The built-in end sends protected echo requests to the peer from the moment it sends (as responder) or receives (as
initiator) the IKE_AUTH response, one every INTERVAL, until one is answered through the Child SA. The delay from
that moment to the first answer is measured and recorded (record_property `first_answer_s`, and
`first_packets.json` beside the capture), never judged as a bound: a loaded host slows the guests. Requests that
reach the peer before its kernel holds the inbound SA are dropped there (the wire check still holds each to its
sequence number); what is judged is that every reply comes back protected: a reply in clear at any moment after
the IKE_AUTH response, before the peer's outbound SA or policy is in place, is FAILED by the wire check's clear-text
check (harness.tools.cleartext), which every case runs.
"""
from __future__ import annotations

import json
import threading
import time
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
def test_the_peer_protects_its_replies_from_the_ike_auth_response_on(pair, record_property):
    end = pair.builtin
    conn = pair.connection(child_proposals=["aes128gcm16"])
    mark = len(end.events)
    failure: list[BaseException] = []

    def establish() -> None:
        try:
            pair.establish(conn)
        except BaseException as e:  # noqa: BLE001 - raised again in the case's thread
            failure.append(e)

    negotiation = threading.Thread(target=establish, name="first-packets-establish", daemon=True)
    negotiation.start()
    child_at = _child_installed(end, mark, negotiation)
    if child_at is None:
        negotiation.join(WAIT)
        raise failure[0] if failure else PeerFault("no Child SA at the built-in end", pair.requirement)
    dst = pair.address(pair.peer, 4)
    sent, answered_at = _until_answered(end, dst, child_at)
    negotiation.join(WAIT)
    if failure:
        raise failure[0]
    if answered_at is None:
        raise PeerFault(f"{pair.peer.name} answered none of {sent} echo requests through the Child SA within "
                        f"{WAIT:.0f} s of the IKE_AUTH response", pair.requirement)
    delay = answered_at - child_at
    role = "responder" if pair.responder is pair.builtin_end else "initiator"
    record_property("first_answer_s", round(delay, 4))
    record_property("echo_requests_before_first_answer", sent)
    pair.directory.mkdir(parents=True, exist_ok=True)
    (pair.directory / "first_packets.json").write_text(json.dumps(
        {"built_in_role": role, "first_answer_s": round(delay, 4), "echo_requests_sent": sent, "interval_s": INTERVAL},
        indent=1) + "\n")
    pair.terminate()


def _child_installed(end: Any, mark: int, negotiation: threading.Thread) -> float | None:
    """The moment the built-in end installs the Child SA (it sends or receives the IKE_AUTH response), or None if the
    negotiation ended without one."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        ended = not negotiation.is_alive()  # read before the events: a Child SA installed just before the end counts
        if any(isinstance(e, ChildSaEstablished) for e in end.events[mark:]):
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
