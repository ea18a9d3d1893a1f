"""Bad ESP packets into each peer's kernel (RFC 4303 s2.4, s2.6, s2.7, s3.4; RFC 4301 s5.2), one table row a case.

The built-in end establishes an aes128gcm16 Child SA (aes128-sha256 for the CBC rows) with the peer and sends the row's packets into the peer's
inbound SA: a wrong ICV, a corrupted ciphertext, bad padding bytes, a Pad Length past the payload, an unknown SPI,
packets cut inside the ICV, inside the IV and before the end of the ESP header, a wrong Next Header in tunnel and
transport mode, dummy packets (Next Header 59) and TFC padding. A row expects the packets dropped, each counted in
the counters it names (`negative.json`, measured on the guests' kernel), nothing answered and, for a dummy packet,
no ICMP error sent (s2.6: discarded without indicating an error); or accepted (TFC padding, s2.7); or, for padding
content, which a receiver MAY check (s2.4), either, recorded. After the bad packets a correct one must still be
answered (expect_dropped sends it): the SA keeps working.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.cases.dataplane import Make, protect_with
from harness.cases.table import row_params
from harness.errors import ConfigError, PeerFault
from harness.esp import Faults, Sender
from harness.esp.ip import parse_ip, with_payload
from harness.ike.events import ChildSaEstablished

pytestmark = [pytest.mark.lab, pytest.mark.root]

TABLE = Path(__file__).with_name("negative.json")
PROPOSAL = "aes128gcm16"


def _rows() -> list[Any]:
    return row_params(TABLE, {"counted", "expect", "mode", "proposal", "send", "silent"})


def _zero_padding(align: int) -> Make:
    """Padding to the cipher's alignment (4 bytes for GCM, the block for CBC: RFC 4303 s2.4), one alignment unit
    longer than needed, all zero (not 1, 2, 3...); tunnel mode (the payload is the inner packet)."""
    return lambda tx, inner: tx.protect(inner, Faults(padding=bytes(-(len(inner) + 2) % align + align)))


def _cut_to(keep: int) -> Make:
    """The correct ESP packet cut to its first `keep` bytes, the outer IP length fixed (the IP layer still takes it)."""
    def make(tx: Sender, inner: bytes) -> bytes:
        whole = tx.protect(inner)
        view = parse_ip(whole, "outer packet")
        return with_payload(view, whole, whole[view.proto_pos], whole[view.offset:view.offset + keep])
    return make


def _makes(send: dict[str, Any]) -> list[Make]:
    """One Make per packet the row sends."""
    if "faults" in send:
        f = dict(send["faults"])
        if "padding" in f:
            f["padding"] = bytes.fromhex(f["padding"])
        make = protect_with(Faults(**f))
    elif "zero_padding" in send:
        make = _zero_padding(send["zero_padding"])
    elif "keep" in send:
        make = _cut_to(send["keep"])
    elif "dummy" in send:
        n = send["dummy"]
        make = lambda tx, inner: tx.dummy(n)  # noqa: E731 - the inner packet has no place in a dummy packet
    else:
        raise ConfigError(f"{TABLE.name}: a row's send names none of faults, zero_padding, keep, dummy: {send}")
    return [make] * send.get("count", 1)


@pytest.mark.ends("builtin>peer")
@pytest.mark.parametrize("row", _rows())
def test_the_peer_kernel_handles_a_bad_esp_packet(pair, row, record_property):
    pair.establish(pair.connection(mode=row["mode"], child_proposals=[row.get("proposal", PROPOSAL)]))
    what = f"{row['id']} ({row['mode']} mode)"
    makes = _makes(row["send"])
    if row["expect"] == "accepted":
        if any(isinstance(e, ChildSaEstablished) and not e.peer_tfc_padding for e in pair.events(pair.builtin_end)):
            pytest.skip(f"{pair.peer.name} announced ESP_TFC_PADDING_NOT_SUPPORTED (RFC 7296 s3.10.1): no TFC padding "
                        f"may be sent to it")
        pair.expect_accepted(makes, what)
        record_property("outcome", "accepted")
    elif row["expect"] == "dropped":
        rose = pair.expect_dropped(makes, row["counted"], what)
        record_property("outcome", f"dropped, counted {rose}")
        loud = {c: rose[c] for c in row.get("silent", ()) if rose.get(c)}
        if loud:
            raise PeerFault(f"{pair.peer.name} dropped {len(makes)} packet(s) with {what} but indicated an error: "
                            f"{loud} rose", pair.requirement)
    else:
        record_property("outcome", _accepted_or_dropped(pair, makes, what))
        pair.expect_accepted([protect_with(Faults())], f"a correct packet after {what}")
    pair.terminate()


def _accepted_or_dropped(pair: Any, makes: list[Make], what: str) -> str:
    """For a MAY check: every packet answered, or every one dropped and counted by some XFRM counter of the peer's
    kernel (which one is recorded, not prescribed); which it was. PeerFault if some were answered and some not, or if
    the packets went unanswered and uncounted."""
    inbound, before = pair.inbound(), pair.counters()
    sent = [pair.craft(m) for m in makes]
    seen: dict[str, Any] = {}

    def settled() -> bool:
        seen["rose"] = pair.counters().rose(before, inbound)
        seen["answered"] = sum(1 for s in sent if pair.builtin.echo_replied(*s))
        return seen["answered"] == len(sent) or any(k.startswith("Xfrm") and v >= len(sent) for k, v in seen["rose"].items())

    try:
        pair.wait(settled, f"{what}: {len(sent)} packet(s) answered, or counted by an XFRM counter")
    except PeerFault as e:
        raise PeerFault(f"{pair.peer.name} neither answered nor counted {len(sent)} packet(s) with {what} "
                        f"(answered {seen.get('answered')}, counters that rose {seen.get('rose')}): {e}",
                        pair.requirement) from None
    answered, rose = seen["answered"], seen["rose"]
    if answered == len(sent):
        return f"accepted (answered {answered} of {len(sent)})"
    if answered:
        raise PeerFault(f"{pair.peer.name} answered {answered} of {len(sent)} packets with {what} and dropped the "
                        f"others (counters that rose: {rose})", pair.requirement)
    return f"dropped, counted {rose}"
