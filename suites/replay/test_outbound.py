"""The peer as the sender near 2^32 (RFC 4303 s3.3.3, s2.2.1): the harness moves the peer kernel's output counter
over XFRM netlink (harness/cases/outbound_seq.py) and the peer answers echo requests from the built-in end through
the SA. Without ESN its counter must not cycle: the last numbers before 2^32 go out, then it stops sending on that
SA (or rekeys) and never sends 0 or a low number again; with ESN it carries on past 2^32 and the built-in end, which
infers the high half (Appendix A2.2), accepts every packet.
"""
from __future__ import annotations

import pytest

from harness.cases.dataplane import protect_with
from harness.cases.outbound_seq import set_oseq
from harness.errors import PeerFault
from harness.esp import Faults

pytestmark = [pytest.mark.lab, pytest.mark.root]

B = 1 << 32


def _move(pair, seq: int) -> str:  # noqa: ANN001
    """Set the peer's outbound SA of the case so its next packet carries seq + 1; the replay state's form."""
    c = pair.child(pair.peer)
    return set_oseq(pair.peer.adapter, pair.address(pair.builtin_end, pair._version()),
                    pair.address(pair.peer, pair._version()), c.spi_out, c.protocol, seq)


def _oseq(pair) -> int:  # noqa: ANN001
    st = pair.counters().sas[(pair.inbound()[0], pair.child(pair.peer).spi_out)]
    return st.replay.get("oseq_hi", 0) << 32 | st.replay.get("oseq", 0)


@pytest.mark.ends("builtin>peer")
@pytest.mark.parametrize("esn", [False, True], ids=["noesn", "esn"])
@pytest.mark.rfc(4303, "3.3.3", "MUST")
def test_the_peer_sender_stops_at_2_32_without_esn_and_carries_on_with_it(pair, esn, record_property):
    pair.establish(pair.connection(child_proposals=["aes128gcm16-esn" if esn else "aes128gcm16-noesn"]))
    pair.traffic(count=1)
    form = _move(pair, (1 << 31) - 1)  # the middle first: the receiver's window then lies in one 2^32 subspace
    record_property("replay_state", form)
    pair.expect_accepted([protect_with(Faults())], "an echo request answered with sequence number 2^31")
    _move(pair, B - 3)
    pair.expect_accepted([protect_with(Faults())] * 2, "echo requests answered with numbers 2^32-2 and 2^32-1")
    if esn:
        pair.expect_accepted([protect_with(Faults())] * 2, "echo requests answered past 2^32 (ESN)")
        if _oseq(pair) != B + 1:
            raise PeerFault(f"{pair.peer.name}'s outbound SA counter is {_oseq(pair):#x} after 4 packets from "
                            f"2^32-2, not 2^32+1", "RFC 4303 s2.2.1 MUST")
        pair.traffic(count=1)
        pair.terminate()
        return
    old = pair.child(pair.peer).spi_out
    before = pair.counters()
    sent = [pair.craft(protect_with(Faults())) for _ in range(2)]
    state = {}

    def settled() -> bool:
        state["rose"] = pair.counters().rose(before, pair.inbound())
        return state["rose"].get("XfrmOutStateSeqError", 0) >= 2 or any(pair.builtin.echo_replied(*s) for s in sent)

    try:
        pair.wait(settled, f"{pair.peer.name} refuses to send past 2^32-1 without ESN (XfrmOutStateSeqError)")
    except PeerFault:
        pass  # judged below
    rose = state.get("rose", {})
    record_property("rose", rose)
    answered = [s for s in sent if pair.builtin.echo_replied(*s)]
    oseq = _oseq(pair) if (pair.inbound()[0], old) in pair.counters().sas else None
    record_property("oseq_after", oseq)
    if answered and pair.child(pair.peer).spi_out == old:
        raise PeerFault(f"{pair.peer.name} answered {len(answered)} echo request(s) through SA 0x{old:08x} after "
                        f"sending 2^32-1 without ESN: its counter cycled (now {oseq})", pair.requirement)
    if not answered and rose.get("XfrmOutStateSeqError", 0) != 2:
        raise PeerFault(f"{pair.peer.name} sent nothing after 2^32-1 without ESN but counted {rose} (expected "
                        f"XfrmOutStateSeqError +2)", pair.requirement)
    pair.terminate()
