"""Proposal negotiation (RFC 7296 s2.7, s3.3): every pair of IKE SA transform values, and of Child SA ones,
that each peer lists and the built-in stack implements is negotiated in some case, both ways.

The rows (proposals.json) are a pairwise cover made by harness.cases.proposal_cover from proposal_space.json
and the peers' recorded algorithm lists; at run time a row whose transforms an end's own live list lacks is
UNIMPLEMENTED before anything is loaded, and the first case below checks that the table still covers what
the peer lists now. Each row establishes, carries traffic (judged by the SA counters and the decrypted
capture: the wire check proves both ends derived the same keys for the chosen transforms) and is deleted.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cases import pairwise, proposal_cover
from harness.cases.table import table_params
from harness.errors import LabError

pytestmark = [pytest.mark.lab, pytest.mark.root]
TABLE = Path(__file__).with_name("proposals.json")
SPACE = Path(__file__).with_name("proposal_space.json")


@pytest.mark.ends("builtin>peer")
@pytest.mark.rfc(7296, "2.7", "MUST")
def test_the_table_covers_the_peers_own_list(pair):
    peer = pair.responder
    algs = peer.adapter.algorithms()
    space = json.loads(SPACE.read_text())
    made = [(c["connection"]["ike_proposals"][0], c["connection"]["child_proposals"][0])
            for c in json.loads(TABLE.read_text())["cases"]]
    for index, part in enumerate(("ike", "esp")):
        valid = {p: proposal_cover.profile(peer.adapter.implementation, algs, p) for p in ("ike", "esp")}
        by_text = {proposal_cover.proposal(r): r for p in ("ike", "esp") for r in pairwise.rows_of(space[p])}
        runnable = [by_text[m[index]] for m in made if valid["ike"](by_text[m[0]]) and valid["esp"](by_text[m[1]])]
        missing = pairwise.uncovered(runnable, [r for r in pairwise.rows_of(space[part]) if valid[part](r)])
        if missing:
            names = list(space[part])
            shown = sorted(f"{names[i]}={a} with {names[j]}={b}" for i, a, j, b in missing)[:10]
            raise LabError(f"{TABLE.name} does not cover {len(missing)} {part} pair(s) {peer.name} lists now "
                           f"({algs.source}), e.g. {shown}: record its list beside the others named in "
                           f"{SPACE.name} and run python -m harness.cases.proposal_cover {SPACE} {TABLE}")


@pytest.mark.parametrize("row", table_params(TABLE))
def test_proposal(pair, row):
    pair.expect(row)
    pair.traffic(count=1)
    pair.terminate()
