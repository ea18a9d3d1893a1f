"""Documented differences: per-implementation lists of cases a peer is known to fail, with reason and evidence.

As BoGo keeps its disabled-tests lists, `suites/differences/<implementation>.json` (implementation:
strongswan, libreswan) holds a JSON list of rows, one per known deviation:

    {"id": "strongswan-6.0-ike-auth-no-idr",           stable id, unique across all files
     "case": "test_ike_sa_*",                          fnmatch pattern over the matrix case id (collector.case_name)
     "peers": ["strongswan-6.0*"],                     peer names or fnmatch patterns, each naming the implementation
     "versions": ["6.0.1"],                            optional: fnmatch patterns over the peer's reported version
     "verdict_expected": "FAILED",                     the only verdict a difference can excuse
     "reason": "one line saying what the peer does",
     "evidence": "issue, log line or capture path",
     "requirement": "RFC 7296 s1.2 MUST",
     "intermittent": true}                             optional: the peer deviates in some runs only (a race of its own)

The collector marks each matching test `xfail(strict=True, raises=AssertionError)`: a failure is then
DOCUMENTED, a pass XPASS (the difference is stale), and a harness fault stays BROKEN. An intermittent difference
is `xfail(strict=False)`: a failure is DOCUMENTED, a pass OK (its evidence says in which runs it was seen). Files are parsed
once per process; a bad row is a ConfigError naming the file, the row index and the key.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import lru_cache
from pathlib import Path

from harness.errors import ConfigError

REQUIRED = ("id", "case", "peers", "verdict_expected", "reason", "evidence", "requirement")
OPTIONAL = ("versions", "intermittent")
EXCUSABLE = ("FAILED",)


@dataclass(frozen=True)
class Difference:
    """One documented difference: which cases and peers (and versions) it covers, why, and the evidence."""

    id: str
    implementation: str
    case: str
    peers: tuple[str, ...]
    versions: tuple[str, ...]
    verdict_expected: str
    reason: str
    evidence: str
    requirement: str
    intermittent: bool = False

    def covers(self, case: str, peer: str) -> bool:
        """Whether this difference names the case id and the peer (versions aside)."""
        return fnmatchcase(case, self.case) and any(fnmatchcase(peer, p) for p in self.peers)

    def covers_version(self, version: str | None) -> bool:
        """Whether the peer's reported version is one this difference names (any, when it names none)."""
        return not self.versions or (version is not None and any(fnmatchcase(version, p) for p in self.versions))

    def as_record(self) -> dict[str, str]:
        """The fields a result record carries about the difference."""
        return {"id": self.id, "reason": self.reason, "evidence": self.evidence, "requirement": self.requirement}


def _row(path: Path, index: int, row: object) -> Difference:
    """One validated row of a differences file."""
    def bad(key: str, why: str) -> ConfigError:
        return ConfigError(f"{path}: row {index}: key {key!r}: {why}")

    if not isinstance(row, dict):
        raise bad("", "a row must be an object")
    for key in REQUIRED:
        if key not in row:
            raise bad(key, "missing")
    for key in row:
        if key not in REQUIRED + OPTIONAL:
            raise bad(key, f"unknown key (expected {', '.join(REQUIRED + OPTIONAL)})")
    for key in ("id", "case", "reason", "evidence", "requirement"):
        if not isinstance(row[key], str) or not row[key].strip():
            raise bad(key, "must be a non-empty string")
    if "\n" in row["reason"]:
        raise bad("reason", "must be one line")
    if row["verdict_expected"] not in EXCUSABLE:
        raise bad("verdict_expected", f"{row['verdict_expected']!r}: a difference can only excuse {', '.join(EXCUSABLE)}")
    implementation = path.stem
    if not isinstance(row.get("intermittent", False), bool):
        raise bad("intermittent", "must be true or false")
    for key in ("peers", "versions"):
        value = row.get(key, [])
        if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
            raise bad(key, "must be a list of non-empty strings")
    if not row["peers"]:
        raise bad("peers", "names no peer")
    for p in row["peers"]:
        if not p.startswith(implementation):
            raise bad("peers", f"{p!r} is not a {implementation} peer (rows go in the file of their implementation)")
    return Difference(row["id"], implementation, row["case"], tuple(row["peers"]), tuple(row.get("versions", [])),
                      row["verdict_expected"], row["reason"], row["evidence"], row["requirement"],
                      row.get("intermittent", False))


def load(path: Path) -> list[Difference]:
    """The rows of one differences file; ConfigError naming the file (and row and key) when it is malformed."""
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not JSON: {e}") from None
    if not isinstance(data, list):
        raise ConfigError(f"{path}: expected a JSON list of difference rows")
    return [_row(path, i, row) for i, row in enumerate(data)]


@lru_cache(maxsize=None)
def load_all(directory: Path) -> tuple[Difference, ...]:
    """Every row of directory/*.json (none when the directory is absent), parsed once; ids must be unique."""
    out: list[Difference] = []
    seen: dict[str, Path] = {}
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        for i, d in enumerate(load(path)):
            if d.id in seen:
                raise ConfigError(f"{path}: row {i}: key 'id': {d.id!r} is already used in {seen[d.id]}")
            seen[d.id] = path
            out.append(d)
    return tuple(out)


def matching(differences: tuple[Difference, ...], case: str, peers: list[str]) -> list[Difference]:
    """The differences covering the case for any of the peers, in file order."""
    return [d for d in differences if any(d.covers(case, p) for p in peers)]
