"""Pairwise covers and the proposal table made from them: every pair each peer can run is in a row it can run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cases import pairwise, proposal_cover
from harness.errors import ConfigError

SPACE = Path(__file__).resolve().parents[3] / "suites/ike/proposal_space.json"
TABLE = SPACE.with_name("proposals.json")


def test_an_unconstrained_space_is_covered_near_the_minimum() -> None:
    space = {"a": ["1", "2", "3", "4"], "b": ["x", "y", "z"], "c": ["p", "q"], "d": ["u", "v"]}
    rows = pairwise.cover(space, [lambda r: True])
    assert not pairwise.uncovered(rows, pairwise.rows_of(space))
    assert 12 <= len(rows) <= 16 < len(pairwise.rows_of(space))  # 4 x 3 at least; far from the 48 of the product


def test_each_profile_is_covered_by_rows_it_can_run() -> None:
    space = {"encr": ["cbc", "gcm"], "integ": ["none", "sha1", "sha2"], "ke": ["m", "e", "x"]}
    aead_rule = lambda r: (r[0] == "gcm") == (r[1] == "none")  # noqa: E731
    narrow = lambda r: aead_rule(r) and r[2] != "x" and r[1] != "sha2"  # noqa: E731
    rows = pairwise.cover(space, [narrow, aead_rule])
    for valid in (narrow, aead_rule):
        mine = [r for r in rows if valid(r)]
        assert not pairwise.uncovered(mine, [r for r in pairwise.rows_of(space) if valid(r)])
    assert all(aead_rule(r) for r in rows)


def _split(row: dict) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return tuple(row["connection"]["ike_proposals"]), tuple(row["connection"]["child_proposals"])


def test_the_committed_table_is_what_the_generator_makes() -> None:
    made = proposal_cover.table(SPACE)["cases"]
    committed = json.loads(TABLE.read_text())["cases"]
    assert committed == made, "suites/ike/proposals.json is stale: python -m harness.cases.proposal_cover " \
                              "suites/ike/proposal_space.json suites/ike/proposals.json"


@pytest.mark.parametrize("part", ["ike", "esp"])
def test_the_table_covers_every_pair_each_peer_can_run(part: str) -> None:
    space = json.loads(SPACE.read_text())
    rows = json.loads(TABLE.read_text())["cases"]
    index = 0 if part == "ike" else 1
    made = {r["id"].split(".")[index] for r in rows}
    assert len(made) > 1
    for name, (family, algs) in proposal_cover.lists(space, SPACE).items():
        valid = proposal_cover.profile(family, algs, part)
        candidates = [r for r in pairwise.rows_of(space[part]) if valid(r)]
        have = [r for r in candidates if proposal_cover.proposal(r) in made]
        # a row counts for a peer only if the peer can run the whole row (both its proposals)
        runnable = {r["id"].split(".")[index] for r in rows
                    if all(proposal_cover.profile(family, algs, p)(_row(space[p], r["id"].split(".")[i]))
                           for i, p in enumerate(("ike", "esp")))}
        have = [r for r in have if proposal_cover.proposal(r) in runnable]
        assert candidates and not pairwise.uncovered(have, candidates), name


def _row(space: dict, text: str) -> tuple[str, ...]:
    """The space row whose proposal is text."""
    for r in pairwise.rows_of(space):
        if proposal_cover.proposal(r) == text:
            return r
    raise AssertionError(f"{text} is not a row of the space")


def test_a_bad_space_file_names_itself(tmp_path: Path) -> None:
    p = tmp_path / "space.json"
    p.write_text(json.dumps({"ike": {}, "esp": {}, "rfc": [7296, "2.7", "MUST"], "algorithm_lists": {"racoon-1": "x"}}))
    with pytest.raises(ConfigError, match=r"space.json: algorithm_lists: 'racoon-1'"):
        proposal_cover.table(p)
    p.write_text(json.dumps({"ike": {}}))
    with pytest.raises(ConfigError, match="missing 'esp'"):
        proposal_cover.table(p)
