"""Rekeying between every pair of ends (RFC 7296 s1.3.2, s1.3.3, s2.8): the new SA replaces the old one on
both ends with new agreeing SPIs, and traffic goes on through it (counters and the decrypted wire)."""
from __future__ import annotations

import pytest

pytestmark = [pytest.mark.lab, pytest.mark.root]


@pytest.mark.rfc(7296, "2.8", "MUST")
@pytest.mark.parametrize("what,by", [("child", "initiator"), ("child", "responder"), ("ike", "initiator")])
def test_rekey_replaces_the_sa_and_traffic_goes_on(pair, what, by):
    pair.establish(pair.connection())
    pair.traffic(count=2)
    pair.rekey(what, by=by)
    pair.traffic(count=2)
    pair.terminate()
