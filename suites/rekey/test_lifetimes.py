"""Rekeying driven by the peer's own lifetimes (RFC 7296 s2.8), one row of lifetimes.json a case.

The peer's Connection carries short lifetimes, in seconds, packets or octets (the built-in end's none, so it never rekeys first); after the
IKE_AUTH the peer must rekey the row's SA on its own before it expires, under the built-in end's 50 ms echo stream
(every request answered: an SA that expired before its replacement would lose them), the old SA deleted at both
ends as for a rekey on demand (harness.cases.rekeying.replace with no end asked). The peer as IKE responder.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.cases.table import row_params

pytestmark = [pytest.mark.lab, pytest.mark.root]

TABLE = Path(__file__).with_name("lifetimes.json")


def _rows() -> list[Any]:
    return row_params(TABLE, {"lifetimes", "what"})


@pytest.mark.ends("builtin>peer")
@pytest.mark.parametrize("row", _rows())
def test_the_peer_rekeys_on_its_own_before_expiry(pair, row):
    pair.establish(pair.connection(lifetimes=row["lifetimes"]))  # the built-in end takes no lifetimes: the peer rekeys
    with pair.stream():  # its last request and answer go through the new SAs: the traffic after the rekey
        pair.replace(row["what"], by=None)
    pair.terminate()  # no more traffic: a volume limit may rekey the new SA too, and pair.traffic counts on one SA
