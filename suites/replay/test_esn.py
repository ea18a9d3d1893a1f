"""Extended Sequence Numbers against each peer (RFC 4303 s2.2.1, Appendix A; RFC 4302 s2.5.1; RFC 7296 s3.3.2): ESN
offered alone (with AES-GCM, where the high half is in the AAD; with AES-CBC and HMAC, where it is appended to the
ICV input; with AH), no ESN alone, and both (the responder's choice), in both IKE roles; the peer kernel's SAs carry flag esn exactly
when ESN was negotiated; with ESN the built-in end's numbers cross the 2^32 boundary of the low-order bits into
the peer (it must infer the high half, A2.2) and a packet authenticated with the wrong high half is dropped and
counted.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.cases.antireplay import esn_plan, play
from harness.cases.table import table_params
from harness.errors import PeerFault

pytestmark = [pytest.mark.lab, pytest.mark.root]

ROWS = table_params(Path(__file__).with_name("esn.json"))


def esn_offered(proposal: str) -> set[bool]:
    """The ESN values one proposal string offers (no keyword: no ESN only)."""
    words = set(proposal.split("-"))
    return {True, False} if {"esn", "noesn"} <= words else {"esn" in words}


def negotiated_esn(pair) -> bool:  # noqa: ANN001
    """ESN as the built-in end negotiated it for the case's Child SA (its inbound SA's keys)."""
    spi = pair.child(pair.builtin_end).spi_in
    sa = next((k for k in pair.builtin.keys().ipsec_sas if k.spi == spi), None)
    if sa is None:
        raise PeerFault(f"the built-in end has no keys for its inbound SA 0x{spi:08x}", pair.requirement)
    return sa.esn


@pytest.mark.ends("builtin>peer", "peer>builtin")
@pytest.mark.parametrize("row", ROWS)
def test_esn_negotiated_is_what_the_peer_kernel_uses(pair, row, record_property):
    conn = pair.from_row(row)
    pair.establish(conn)
    esn = negotiated_esn(pair)
    record_property("negotiated_esn", esn)
    offered = set().union(*(esn_offered(p) for p in conn.child_proposals))
    if esn not in offered:
        raise PeerFault(f"ESN {'on' if esn else 'off'} was negotiated, the proposals offered {conn.child_proposals}",
                        "RFC 7296 s3.3.2 MUST")
    proto, spi_in = pair.inbound()
    spi_out = pair.child(pair.peer).spi_out
    sas = pair.counters().sas
    for way, spi in (("inbound", spi_in), ("outbound", spi_out)):
        st = sas.get((proto, spi))
        if st is None:
            raise PeerFault(f"{pair.peer.name}'s kernel holds no {way} SA 0x{spi:08x}", pair.requirement)
        if st.esn != esn:
            raise PeerFault(f"{pair.peer.name}'s {way} kernel SA 0x{spi:08x} has flag esn {st.esn}, ESN negotiated: "
                            f"{esn}", "RFC 4303 s2.2.1 MUST")
    if esn:
        window = sas[(proto, spi_in)].window
        record_property("kernel_window", window)
        before = pair.counters()
        accepted = play(pair, esn_plan(window))
        rose = pair.counters().rose(before, (proto, spi_in))
        record_property("rose", rose)
        if rose.get("packets", 0) != accepted:
            raise PeerFault(f"{pair.peer.name}'s inbound SA 0x{spi_in:08x} accepted {rose.get('packets', 0)} packets "
                            f"across 2^32, the plan has {accepted} valid ones (counters that rose: {rose})",
                            pair.requirement)
    pair.traffic(count=2)
    pair.terminate()
