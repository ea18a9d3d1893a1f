"""Rekeying driven by the peer's own lifetimes (RFC 7296 s2.8), one row of lifetimes.json a case.

The peer's Connection carries short lifetimes, in seconds, packets or octets (the built-in end's none, so it never rekeys first); after the
IKE_AUTH the peer must rekey the row's SA on its own before it expires, under the built-in end's 50 ms echo stream
(every request answered: an SA that expired before its replacement would lose them), the old SA deleted at both
ends as for a rekey on demand (harness.cases.rekeying.replace with no end asked). The peer as IKE responder; for
reauthentication (RFC 7296 s2.8.3: a new IKE SA from scratch, new Child SAs, the old IKE SA deleted:
harness.cases.rekeying.reauthenticated) in either IKE role.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.cases.rekeying import StreamLost
from harness.cases.table import row_params
from harness.report.checks import should

pytestmark = [pytest.mark.lab, pytest.mark.root]

TABLE = Path(__file__).with_name("lifetimes.json")


def _rows() -> list[Any]:
    return row_params(TABLE, {"lifetimes", "what"})


@pytest.mark.parametrize("row", _rows())
def test_the_peer_rekeys_on_its_own_before_expiry(pair, row, request):
    pair.establish(pair.connection(lifetimes=row["lifetimes"]))  # the built-in end takes no lifetimes: the peer rekeys
    try:
        with pair.stream():  # its last request and answer go through the new SAs: the traffic after the rekey
            if row["what"] == "reauth":
                pair.reauthenticated()
            else:
                pair.replace(row["what"], by=None)
    except StreamLost as e:
        if row["what"] != "reauth":
            raise
        # s2.8.3 orders it (new IKE SA and Child SAs, then the old IKE SA deleted) but asks no lossless switch: a gap
        # where the built-in end held no Child SA (the old deleted first) or requests lost on either SA is NON-STRICT
        request.node.user_properties.append(("unsendable", len(e.count.unsendable)))
        should(request, False, "RFC 7296 s2.8.3 (new IKE SA and Child SAs first, then the old IKE SA deleted)",
               f"echo requests lost across {pair.peer.name}'s reauthentication, {len(e.count.unsendable)} of them while "
               f"the built-in end held no Child SA (the old one deleted before the new one stood); {e}")
    pair.terminate()  # no more traffic: a volume limit may rekey the new SA too, and pair.traffic counts on one SA
