"""Traffic selectors (RFC 7296 s2.9, s3.13.1): agreed host selectors in tunnel and transport mode, a proposal inside
the responder's policy taken as it is, a wider one narrowed to the policy, several selectors in one TS payload (kept,
or narrowed to one), IP protocol and port selectors (agreed, or narrowed to a port), and TS_UNACCEPTABLE for one
outside the policy with no Child SA left; a mode only the initiator wants (USE_TRANSPORT_MODE, s1.3.1). Rows are selectors.json; selectors are named by their place in the lab (Pair.selector),
so the rows hold no address. An established row carries traffic, judged by counters and the decrypted capture.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.cases.table import table_params
from harness.errors import NotEstablished, PeerFault, Refused

pytestmark = [pytest.mark.lab, pytest.mark.root]
TABLE = Path(__file__).with_name("selectors.json")


@pytest.mark.parametrize("row", table_params(TABLE))
def test_selectors(pair, row):
    """A row established carries echo traffic, unless its selectors name a protocol other than ICMP (a UDP port):
    then both ends' selectors are the evidence."""
    pair.expect(row)
    if row.expect.outcome == "established":
        tokens = [t for ts in row.selectors.values() for t in ts]
        if all("[" not in t or t.endswith("[icmp]") for t in tokens):
            pair.traffic(count=1)
        pair.terminate()


@pytest.mark.rfc(7296, "1.3.1", "MUST")
@pytest.mark.parametrize("mode", ["transport", "tunnel"])
def test_a_mode_only_the_initiator_wants(pair, mode, record_property):
    """The initiator asks for `mode` (USE_TRANSPORT_MODE or not), the responder allows only the other. Either the
    Child SA is refused or deleted by the initiator, leaving none, or both ends hold it in the same mode, and never
    in transport mode unless the initiator asked for it (RFC 7296 s1.3.1)."""
    other = "tunnel" if mode == "transport" else "transport"
    conn = pair.connection(mode=mode)
    try:
        pair.establish(conn, pair.mirror(conn, mode=other))
    except (Refused, NotEstablished) as e:
        pair.after_refusal(f"a {mode} mode request to a {other} mode responder ({e})", child_only=True)
        record_property("outcome", f"no Child SA: {e}")
        return
    modes = {e.name: pair.child(e).mode for e in pair.ends}
    if len(set(modes.values())) != 1 or (mode == "tunnel" and "transport" in modes.values()):
        raise PeerFault(f"the initiator asked for {mode} mode, the responder allows {other} mode only; the Child SA's "
                        f"modes: {modes}", "RFC 7296 s1.3.1 MUST")
    record_property("outcome", f"established in {modes[pair.initiator.name]} mode at both ends")
    pair.traffic(count=1)
    pair.terminate()
