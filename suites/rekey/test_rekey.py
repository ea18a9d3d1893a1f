"""Rekeying between every pair of ends under traffic (RFC 7296 s1.3.2, s1.3.3, s2.8), one row of rekeys.json a case.

The Child SA or the IKE SA is rekeyed by either end, without and with PFS (a KE payload of the IKE SA's group or of
another), and with a KE group the responder does not take first (answered INVALID_KE_PAYLOAD, retried with the group
it names). While the rekey runs the built-in end sends echo requests every 50 ms (harness.cases.stream): every one
must be answered, through the old SA until the new one is used; the new SAs carry the stream's last requests and
answers. The old Child SA (or IKE SA) must be gone from both ends' daemons and each peer's kernel; after an IKE SA
rekey the Child SA stands on the new IKE SA with its SPIs. The wire check holds every SA's first sequence number to
1 and requires the stream's requests on the wire through the SAs they were sent on. Between two reference peers the
rows run without the stream (traffic before and after, judged by counters and the wire).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.cases.table import row_params
from harness.errors import ConfigError, NoAnswer, PeerFault
from harness.ike.events import ChildSaEstablished, ExchangeFailed, KeRetry
from harness.report.checks import should

pytestmark = [pytest.mark.lab, pytest.mark.root]

TABLE = Path(__file__).with_name("rekeys.json")
KEYS = {"what", "by", "ke", "ke_retry", "connection", "builtin", "peer"}


def _rows() -> list[Any]:
    out = row_params(TABLE, KEYS)
    for p in out:
        r = p.values[0]
        if r["what"] not in ("child", "ike") or r["by"] not in ("initiator", "responder", "builtin", "peer"):
            raise ConfigError(f"{TABLE}: row {r['id']}: what {r['what']!r} (child, ike), by {r['by']!r} "
                              "(initiator, responder, builtin, peer)")
    return out


def _ends_of(pair, row) -> tuple[Any, Any, str]:  # noqa: ANN001
    """(initiator's Connection, responder's, the rekeying end as initiator|responder) for the row."""
    sides = {e.name: row.get("builtin" if e.builtin else "peer", {}) for e in pair.ends}
    conn = pair.connection(**row.get("connection", {}), **sides[pair.initiator.name])
    by = row["by"]
    if by in ("builtin", "peer"):
        by = "initiator" if pair.initiator.builtin == (by == "builtin") else "responder"
    return conn, pair.mirror(conn, **sides[pair.responder.name]), by


@pytest.mark.parametrize("row", _rows())
def test_rekey_under_traffic(pair, row, record_property, request):
    conn, responder, by = _ends_of(pair, row)
    pair.establish(conn, responder)
    if all(not e.builtin for e in pair.ends):
        pair.traffic(count=2)
        pair.replace(row["what"], by=by)
    else:
        try:
            with pair.stream():
                pair.replace(row["what"], by=by)
        except NoAnswer:
            if not _not_retried(pair, row, request):
                raise
        else:
            _check_ke(pair, row, record_property)
    pair.traffic(count=2)
    pair.terminate()


def _not_retried(pair, row, request) -> bool:  # noqa: ANN001
    """True (NON-STRICT recorded) when the peer's rekey was answered INVALID_KE_PAYLOAD by the built-in end and the
    peer did not try again: RFC 7296 s1.3 only says the initiator 'will probably retry' (no MUST)."""
    events = pair.events(pair.builtin_end)
    sent = [e for e in events if isinstance(e, ExchangeFailed) and not e.received]
    made = [e for e in events if isinstance(e, ChildSaEstablished)]
    if row.get("ke_retry") != "builtin" or not any(e.notify == "INVALID_KE_PAYLOAD" for e in sent) or len(made) > 1:
        return False
    should(request, False, "RFC 7296 s1.3 (the initiator 'will probably retry')",
           f"{pair.peer.name} did not retry its Child SA rekey with the group named in the built-in end's "
           f"INVALID_KE_PAYLOAD: the Child SA was not rekeyed")
    return True


def _check_ke(pair, row, record_property) -> None:  # noqa: ANN001
    """The new Child SA was made with the row's KE group (PFS), after the INVALID_KE_PAYLOAD retry the row names."""
    if "ke" not in row:
        return
    spi = pair.child(pair.builtin_end).spi_in
    ke = pair.builtin.read(lambda ep: next((c.suite.ke for s in ep.established() for k, c in s.children.items()
                                            if int.from_bytes(k, "big") == spi), None))
    record_property("child_ke", ke.name if ke else None)
    if ke is None or ke.name.lower().replace("_", "") != row["ke"]:
        raise PeerFault(f"the rekeyed Child SA was made with KE {ke.name if ke else 'none'}, the case requires "
                        f"{row['ke']} (RFC 7296 s1.3.3: a KE payload in CREATE_CHILD_SA)", pair.requirement)
    if "ke_retry" not in row:
        return
    events = pair.events(pair.builtin_end)
    if row["ke_retry"] == "peer":  # the built-in end offered its first group, the peer named the one it takes
        seen = [e.group for e in events if isinstance(e, KeRetry) and e.exchange == "CREATE_CHILD_SA"]
        refusals = [e.notify for e in events if isinstance(e, ExchangeFailed) and e.received]
        if not seen:
            raise PeerFault(f"{pair.peer.name} did not answer the rekey's KE of a group it does not take with "
                            f"INVALID_KE_PAYLOAD (refusals received: {refusals})", pair.requirement)
    else:  # the built-in end answered the peer's first group INVALID_KE_PAYLOAD; the peer must have retried
        seen = [e.notify for e in events if isinstance(e, ExchangeFailed) and not e.received]
        if "INVALID_KE_PAYLOAD" not in seen:
            raise PeerFault(f"the built-in end never answered INVALID_KE_PAYLOAD: {pair.peer.name} did not offer the "
                            f"other group first (sent: {seen})", pair.requirement)
    record_property("ke_retry", seen)
