"""The anti-replay window of each peer's kernel SA (RFC 4303 s3.4.3): for the peer's default window, the check
turned off (window 0), a window one past the kernel's legacy 32-bit bitmap and the largest the kernel takes (4096),
the window the kernel really got is the one configured, and sequence numbers the built-in end chooses from the
window's edges (harness/cases/antireplay.py) are accepted once, dropped as duplicates or as left of the window,
each drop counted by the peer's replay counters, and no valid packet lost.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.cases.antireplay import play, window_plan
from harness.cases.table import table_params
from harness.datafile import load_json
from harness.errors import PeerFault

pytestmark = [pytest.mark.lab, pytest.mark.root]

TABLE = Path(__file__).with_name("windows.json")
DEFAULTS = load_json(TABLE)["defaults"]  # each implementation's own window when the connection names none


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
    want = conn.replay_window if conn.replay_window is not None else DEFAULTS[pair.peer.name.split("-")[0]]
    sa = kernel_sa(pair)
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
