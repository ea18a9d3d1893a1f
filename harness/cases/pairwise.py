"""Pairwise covers: a few rows in which every pair of factor values that some valid row can hold appears.

A space is an ordered mapping factor -> values; a row assigns one value to each factor. `cover` builds, for
several profiles (each a predicate saying which rows an end can run), one list of rows such that for every
profile, every pair of values (of two factors) that appears in any row valid for the profile appears in a row
of the list valid for that profile. Profiles are taken in order, the rows made for earlier ones counting for
later ones; put the most restrictive first. Greedy (each row the valid one covering most pairs not yet covered,
ties to the earlier value in the space's order), so the result is deterministic and near the minimum
(at least |largest factor| x |second largest| rows for an unconstrained space).
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence

Row = tuple[str, ...]
Pair = tuple[int, str, int, str]


def rows_of(space: Mapping[str, Sequence[str]]) -> list[Row]:
    """Every row of the space (its full cross product), in the space's order."""
    return list(itertools.product(*space.values()))


def pairs_of(row: Row) -> set[Pair]:
    """The pairs of (factor index, value) a row holds."""
    return {(i, row[i], j, row[j]) for i, j in itertools.combinations(range(len(row)), 2)}


def cover(space: Mapping[str, Sequence[str]], profiles: Iterable[Callable[[Row], bool]]) -> list[Row]:
    """Rows covering, for each profile in turn, every pair some valid row of that profile holds (see module doc)."""
    every = rows_of(space)
    out: list[Row] = []
    for valid in profiles:
        rows = [r for r in every if valid(r)]
        todo = set().union(*map(pairs_of, rows)) if rows else set()
        for r in out:
            if valid(r):
                todo -= pairs_of(r)
        while todo:
            best = max(rows, key=lambda r: len(pairs_of(r) & todo))  # max keeps the first of equals
            out.append(best)
            todo -= pairs_of(best)
    return out


def uncovered(rows: Iterable[Row], candidates: Iterable[Row]) -> set[Pair]:
    """The pairs some candidate row holds that no row of rows holds."""
    have = set().union(*map(pairs_of, rows))
    return set().union(*map(pairs_of, candidates)) - have
