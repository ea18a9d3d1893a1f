"""Interop cases as short declarations: any two ends, one connection description, honest verdicts, the wire checked.

- `ends`: which pairs of ends a case runs between (the built-in stack, each reference peer) and on which lab.
- `pair`: the `Pair` a case gets: establish, expect a refusal, traffic, rekey, terminate, wait; its evidence and
  the strict wire check after every case.
- `table`: cases that are tables (proposals, transforms, refusals) as JSON files with stable ids.
- `plugin`: the pytest side: the `ends(...)` marker, the `pair` fixture's parametrization.
How to add a case: suites/README.md.
"""
