"""Sequence numbers across a Child SA rekey (RFC 4303 s3.3.3, RFC 7296 s2.8): the new SA's counters start again at
1 at both ends. The wire check requires every SA's first packet to carry 1 and each later one a higher number;
the peer's kernel must agree: on its new SAs the highest number received and the last number sent equal the
packets counted, so none was skipped or carried over from the old SA.
"""
from __future__ import annotations

import pytest

from harness.errors import PeerFault

pytestmark = [pytest.mark.lab, pytest.mark.root]


def _numbers(pair, spi: int, way: str) -> tuple[int, int]:  # noqa: ANN001
    """(the highest sequence number the peer's kernel SA took, received or sent; its packets counter)."""
    st = pair.counters().sas.get((pair.inbound()[0], spi))
    if st is None:
        raise PeerFault(f"{pair.peer.name}'s kernel holds no {way} SA 0x{spi:08x}", pair.requirement)
    high = st.replay.get("seq_hi" if way == "inbound" else "oseq_hi", 0) << 32
    return high | st.replay.get("seq" if way == "inbound" else "oseq", 0), st.current_packets or 0


@pytest.mark.ends("builtin>peer")
@pytest.mark.rfc(4303, "3.3.3", "MUST")
def test_a_rekeyed_child_sa_counts_again_from_1(pair, record_property):
    pair.establish(pair.connection(child_proposals=["aes128gcm16"]))
    pair.traffic(count=3)
    old = pair.child(pair.peer)
    pair.rekey("child", by="responder")
    new = pair.child(pair.peer)
    if {new.spi_in, new.spi_out} & {old.spi_in, old.spi_out}:
        raise PeerFault(f"{pair.peer.name} kept an SPI across the rekey: {old} -> {new}", "RFC 7296 s2.8 MUST")
    pair.traffic(count=3)
    for way, spi in (("inbound", new.spi_in), ("outbound", new.spi_out)):
        pair.wait(lambda: _numbers(pair, spi, way)[1] >= 6, f"{pair.peer.name}'s new {way} SA counts 6 packets")
        high, packets = _numbers(pair, spi, way)
        record_property(f"new_{way}", {"highest": high, "packets": packets})
        if high != packets:
            raise PeerFault(f"{pair.peer.name}'s new {way} SA 0x{spi:08x} {'received' if way == 'inbound' else 'sent'} "
                            f"up to sequence number {high} in {packets} packets: its numbers did not start again at 1",
                            pair.requirement)
    pair.terminate()
