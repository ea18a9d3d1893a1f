"""The anti-replay window of each peer's kernel SA (RFC 4303 s3.4.3, RFC 4302 s3.4.3 for AH): for the peer's default
window (ESP and AH), the check turned off (window 0), 33 (one past the kernel's legacy 32-bit bitmap), 64 and the
largest the kernel takes (4096), the window the kernel really got is the one configured, and sequence numbers the
built-in end chooses from the window's edges (harness/cases/antireplay.py) are accepted once, dropped as duplicates
or as left of the window, each drop counted by the peer's replay counters, and no valid packet lost. One beyond the
largest must be refused, not silently shrunk.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from harness.cases.antireplay import play, window_plan
from harness.cases.table import table_params
from harness.datafile import load_json
from harness.errors import PeerFault, Refused

pytestmark = [pytest.mark.lab, pytest.mark.root]

TABLE = Path(__file__).with_name("windows.json")
DEFAULTS = load_json(TABLE)["defaults"]  # each implementation's own window when the connection names none
LARGEST = load_json(TABLE)["largest"]  # the kernel's largest window (XFRMA_REPLAY_ESN_MAX)


def kernel_sa(pair, inbound: bool = True):  # noqa: ANN001, ANN201
    """The peer kernel's XfrmState of the case's Child SA, inbound (the peer receives) or outbound."""
    proto, spi = pair.inbound()
    spi = spi if inbound else pair.child(pair.peer).spi_out
    return pair.counters().sas[(proto, spi)]


@pytest.mark.ends("builtin>peer")
@pytest.mark.parametrize("row", table_params(TABLE))
def test_the_replay_window_drops_duplicates_and_old_numbers_and_nothing_else(pair, row, record_property):
    conn = pair.from_row(row)
    pair.establish(conn)
    sa = kernel_sa(pair)
    # the documented default of a known implementation; another (a device) is taken at the window its kernel got
    default = DEFAULTS.get(pair.peer.adapter.implementation, sa.window)
    want = conn.replay_window if conn.replay_window is not None else default
    record_property("kernel_window", sa.window)
    record_property("esn_format", sa.replay_esn_format)
    if sa.window != want:
        raise PeerFault(f"{pair.peer.name} was configured for a replay window of {want} packets, its kernel SA "
                        f"0x{sa.spi:08x} got {sa.window} (replay-window {sa.replay_window}, context {sa.replay})",
                        pair.requirement)
    if sa.esn:
        raise PeerFault(f"{pair.peer.name}'s kernel SA 0x{sa.spi:08x} has flag esn; no ESN was negotiated",
                        "RFC 7296 s3.3.2 MUST")
    before = pair.counters()
    accepted = play(pair, window_plan(want))
    now = kernel_sa(pair)
    rose = pair.counters().rose(before, pair.inbound())
    record_property("accepted", accepted)
    record_property("rose", rose)
    if rose.get("packets", 0) != accepted:
        raise PeerFault(f"{pair.peer.name}'s inbound SA 0x{now.spi:08x} accepted {rose.get('packets', 0)} packets, the "
                        f"plan for window {want} has {accepted} valid ones (counters that rose: {rose})",
                        pair.requirement)
    if want == 0 and rose.get("XfrmInStateSeqError", 0):
        raise PeerFault(f"{pair.peer.name} with the replay check off counted {rose} ", pair.requirement)
    pair.traffic(count=2)
    pair.terminate()


@pytest.mark.ends("builtin>peer")
@pytest.mark.rfc(4303, "3.4.3", "MUST")
def test_a_window_beyond_the_kernels_largest_is_refused_not_shrunk(pair, record_property):
    """One packet more than the kernel's largest window: the peer must not install its Child SA with some other
    window (the kernel refuses the SA; the daemon then refuses the Child SA). The Connection is built beyond the
    bound connection_from_dict puts on replay_window, on purpose."""
    conn = dataclasses.replace(pair.connection(child_proposals=["aes128gcm16"]), replay_window=LARGEST + 1)
    try:
        pair.establish(conn)
    except Refused as e:
        record_property("refused", str(e).splitlines()[0][:300])
        if not pair.ike_sas(pair.builtin_end):  # refused without IDr and AUTH: the IKE SA stands at the peer alone
            raise PeerFault(f"{pair.peer.name} refused the Child SA without authenticating the IKE SA: {e}",
                            "RFC 7296 s1.2 MUST") from None
        pair.after_refusal(f"a replay window of {LARGEST + 1}", child_only=True)
        _drop_larval(pair, record_property)
        return
    sa = kernel_sa(pair)
    raise PeerFault(f"{pair.peer.name} was configured for a replay window of {LARGEST + 1} packets, beyond the "
                    f"kernel's {LARGEST}, and installed its Child SA with a window of {sa.window}", pair.requirement)


def _drop_larval(pair, record_property) -> None:  # noqa: ANN001
    """Delete (and record) SPIs the peer allocated for the refused Child SA and left in its kernel as larval states
    (no algorithms): pluto 4.10 leaves its inbound SPI until the kernel expires it after 30 s, which no requirement
    forbids but the pooled peer must not carry into the next case."""
    larval = [s for s in pair.peer.adapter.xfrm_state() if not s.algorithms]
    if larval:
        record_property("larval_left", [f"{s.proto} 0x{s.spi:08x}" for s in larval])
    for s in larval:
        pair.peer.adapter.run(["ip", "xfrm", "state", "delete", "src", s.src, "dst", s.dst, "proto", s.proto,
                               "spi", f"0x{s.spi:08x}"])
