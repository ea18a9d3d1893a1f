"""What a peer does with a malformed or unusual request inside an established IKE SA (RFC 7296 s2.5, s3.1, s3.2,
s3.14), and that it still serves that IKE SA, its Child SA and a new IKE SA afterwards: a crash or a hang is FAILED
with the peer's log (the waits put it into their error).

Rows are robustness.json: bends applied to an empty INFORMATIONAL request the built-in end sends once with the next
Message ID (harness.ike.endpoint.IkeEndpoint.probe). "answered" must come protected (the peer took the Message ID)
and carry only the row's notify; "dropped" must stay unanswered through a quiet period, and the same Message ID is
then answered as a plain liveness check (the peer did not take it).
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from harness.cases.pair import WAIT
from harness.cases.table import table_params
from harness.errors import NoAnswer, PeerFault
from harness.ike.events import Informational, ProbeAnswered
from harness.report.checks import should

pytestmark = [pytest.mark.lab, pytest.mark.root]
TABLE = Path(__file__).with_name("robustness.json")
QUIET = 2.0  # seconds a dropped request must stay unanswered (peers answer in tens of ms here); a later answer is
# still caught: the case looks again once it is over


@pytest.mark.ends("builtin>peer", "peer>builtin")
@pytest.mark.parametrize("row", table_params(TABLE))
def test_robustness(pair, row, request):
    conn = pair.from_row(row)
    pair.establish(conn)
    end, peer = pair.builtin, next(e for e in pair.ends if not e.builtin)
    ike = {(s.spi_i, s.spi_r) for s in pair.ike_sas(peer)}
    mark = len(end.events)
    end.request(lambda ep: ep.probe(ep.established()[0], row.bends))
    bent = ", ".join(f"{b.op}" for b in row.bends)

    def answers() -> list[ProbeAnswered]:
        return [e for e in end.events[mark:] if isinstance(e, ProbeAnswered)]

    if row.expect.outcome == "answered":
        got = pair.wait(lambda: [a for a in answers() if a.protected], f"{peer.name} answers an INFORMATIONAL request "
                        f"bent by {bent} (RFC {row.requirement})")[0]
        want = (row.expect.detail,) if row.expect.detail else ()
        if got.payloads != want:
            raise PeerFault(f"{peer.name} answered an INFORMATIONAL request bent by {bent} with "
                            f"{list(got.payloads) or 'nothing'}, the case requires {list(want) or 'an empty answer'}",
                            pair.requirement)
    else:
        deadline = time.monotonic() + QUIET
        while time.monotonic() < deadline and not any(a.protected for a in answers()):
            time.sleep(0.1)
        if any(a.protected for a in answers()):
            raise PeerFault(f"{peer.name} answered an INFORMATIONAL request bent by {bent} (protected: it acted on "
                            f"it), the case requires it dropped", pair.requirement)
        if any(b.op == "major_version" for b in row.bends):
            should(request, any("INVALID_MAJOR_VERSION" in a.payloads for a in answers()),
                   "RFC 7296 s2.5 SHOULD: an unprotected INVALID_MAJOR_VERSION for a message of a higher major version",
                   f"{peer.name} sent {[a.payloads for a in answers()] or 'nothing'}")
    _still_serves(pair, end, peer, conn, ike, bent)
    if row.expect.outcome == "dropped" and any(a.protected for a in answers()):
        raise PeerFault(f"{peer.name} answered an INFORMATIONAL request bent by {bent} after {QUIET:.0f} s (protected: "
                        f"it acted on it), the case requires it dropped", pair.requirement)


def _still_serves(pair, end, peer, conn, ike: set, bent: str) -> None:
    """The peer answers a liveness check on the IKE SA, carries traffic on its Child SA and makes a new IKE SA."""
    mark = len(end.events)
    end.request(lambda ep: ep.liveness(ep.established()[0]))
    try:
        end.wait_event(lambda e: isinstance(e, Informational) and e.asked_by_us, mark, WAIT,
                       f"{peer.name} answers a liveness check after the bent request")
    except NoAnswer as e:
        gone = not ike & {(s.spi_i, s.spi_r) for s in pair.ike_sas(peer)}
        raise PeerFault(f"{peer.name} " + ("dropped the IKE SA (no Delete sent) after a request bent by " if gone else
                        "holds the IKE SA but does not answer on it after a request bent by ") +
                        f"{bent}: {e}\n--- {peer.name} log tail ---\n{peer.adapter.logs()[-2500:]}", pair.requirement) from None
    pair.traffic(count=1)
    pair.terminate()
    pair.establish(conn)  # both ends hold the new Child SA, each peer's kernel both of its SAs
