"""Case tables: JSON files of rows, each a stable id, its RFC requirement, connection fields and an expectation.

A table file is {"_source": "...", "cases": [ROW, ...]}; a ROW is
{"id": "esp-gcm128-transport", "rfc": [4303, "2.3", "MUST"], "connection": {...Connection fields...},
 "expect": "established" | "refused:NO_PROPOSAL_CHOSEN" | "n/a:why", "ends": ["builtin>peer", ...] (optional),
 "responder": {...Connection fields the responder has instead of the initiator's mirror} (optional),
 "bends": [{"op": ..., harness.ike.bend.Bend fields}] (optional: a request bent on purpose; its expect is then
 "answered" (protected, nothing in it), "answered:NOTIFY" or "dropped"),
 "selectors": {"local_ts": [TOKEN, ...], "remote_ts": [...]} (optional: the Child SA's selectors the initiator must
 hold once established), "key": "p384" (optional: certificate authentication, each end with a key of this kind)}. In local_ts/remote_ts (connection, responder, selectors) a TOKEN names a selector by its
 place in the lab, from the side of the end whose fields they are: "own", "other", "segment", "spare" (Pair.selector),
 optionally with strongSwan's [PROTOCOL] or [PROTOCOL/PORT] suffix ("own[udp/40001]").
`load_table` parses a file once into CaseRow records (ConfigError naming the file, the row and the key);
`table_params` turns them into pytest params with the row's id and rfc marker.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.datafile import load_json
from harness.errors import ConfigError
from harness.ike.bend import Bend
from harness.ike.certs import KEY_KINDS
from harness.ike.ts import protocol_port

ID_RE = re.compile(r"^[a-z0-9][a-z0-9.+_-]*$")
LEVELS = ("MUST", "MUST NOT", "SHOULD", "SHOULD NOT", "MAY")
KINDS = ("builtin>peer", "peer>builtin", "peer>peer")
SELECTOR_TOKENS = ("own", "other", "segment", "spare")


@dataclass(frozen=True)
class Requirement:
    """An RFC requirement a case checks: number, section, level (MUST, SHOULD, ...)."""

    rfc: int
    section: str
    level: str

    def __str__(self) -> str:
        return f"RFC {self.rfc} s{self.section} {self.level}"


@dataclass(frozen=True)
class Expect:
    """What a case expects: "established", "refused" with a notify, "n/a" with the reason; for a bent request
    "answered" (with the notify the answer must carry, if any) or "dropped"."""

    outcome: str
    detail: str = ""

    @classmethod
    def parse(cls, text: Any, where: str) -> "Expect":
        """From "established", "refused:NOTIFY" or "n/a:reason"; ConfigError naming where."""
        if not isinstance(text, str):
            raise ConfigError(f"{where}: expect: must be a string, not {text!r}")
        outcome, _, detail = text.partition(":")
        if outcome not in ("established", "refused", "n/a", "answered", "dropped") or \
                (outcome in ("refused", "n/a") and not detail) or (outcome in ("established", "dropped") and detail):
            raise ConfigError(f"{where}: expect: {text!r} is not 'established', 'refused:NOTIFY', 'n/a:reason', "
                              "'answered', 'answered:NOTIFY' or 'dropped'")
        return cls(outcome, detail)


@dataclass(frozen=True)
class CaseRow:
    """One row of a case table."""

    id: str
    requirement: Requirement
    connection: dict[str, Any]
    expect: Expect
    ends: tuple[str, ...] | None
    source: str
    responder: dict[str, Any] = field(default_factory=dict)  # fields replacing the mirror's at the responder
    bends: tuple[Bend, ...] = ()  # a request bent on purpose (robustness rows)
    selectors: dict[str, tuple[str, ...]] = field(default_factory=dict)  # local_ts/remote_ts tokens once established
    key: str | None = None  # certificate authentication: each end's key kind (harness.ike.certs.KEY_KINDS)


def _token(t: Any) -> bool:
    """A selector token: one of SELECTOR_TOKENS, optionally with a [PROTOCOL] or [PROTOCOL/PORT] suffix."""
    if not isinstance(t, str):
        return False
    base, _, suffix = t.partition("[")
    if suffix:
        try:
            protocol_port(suffix.removesuffix("]"))
        except ConfigError:
            return False
    return base in SELECTOR_TOKENS and (not suffix or suffix.endswith("]"))


def _common(entry: dict[str, Any], where: str) -> tuple[str, list[Any], list[str] | None]:
    """A row's id, rfc and ends (None: every kind), checked; ConfigError naming where and the key."""
    ident = entry.get("id")
    if not isinstance(ident, str) or not ID_RE.match(ident):
        raise ConfigError(f"{where}: id: must match {ID_RE.pattern}, not {ident!r}")
    rfc = entry.get("rfc")
    if not (isinstance(rfc, list) and len(rfc) == 3 and isinstance(rfc[0], int) and isinstance(rfc[1], str)
            and rfc[2] in LEVELS):
        raise ConfigError(f"{where} ({ident}): rfc: must be [number, \"section\", level in {LEVELS}], not {rfc!r}")
    ends = entry.get("ends")
    if ends is not None and not (isinstance(ends, list) and ends and all(e in KINDS for e in ends)):
        raise ConfigError(f"{where} ({ident}): ends: must be a list of {', '.join(KINDS)}")
    return ident, rfc, ends


def _marks(rfc: list[Any], ends: Any) -> list[Any]:
    return [pytest.mark.rfc(*rfc), *([pytest.mark.ends(*ends)] if ends else [])]


def row_params(path: str | Path, keys: set[str], section: str = "rows") -> list[Any]:
    """pytest params of a suite's own rows (a data-plane table: {"_source": ..., SECTION: [{id, rfc, ends?, note?,
    KEY...}]}), each the row's dict with its id and marks; ConfigError naming the file, row and key."""
    p = Path(path)
    data = load_json(p)
    if not isinstance(data, dict) or not isinstance(data.get(section), list):
        raise ConfigError(f"{p}: expected {{\"_source\": ..., \"{section}\": [...]}}")
    out, seen = [], set()
    for i, entry in enumerate(data[section]):
        where = f"{p}: {section}[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: must be an object")
        ident, rfc, ends = _common(entry, where)
        unknown = set(entry) - {"id", "rfc", "ends", "note"} - keys
        if unknown:
            raise ConfigError(f"{where} ({ident}): unknown key {sorted(unknown)[0]!r}")
        if ident in seen:
            raise ConfigError(f"{where}: id {ident!r} appears twice")
        seen.add(ident)
        out.append(pytest.param(entry, id=ident, marks=_marks(rfc, ends)))
    return out


def _row(entry: Any, where: str) -> CaseRow:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: must be an object")
    unknown = set(entry) - {"id", "rfc", "connection", "expect", "ends", "note", "responder", "bends", "selectors", "key"}
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    ident, rfc, ends = _common(entry, where)
    conn = entry.get("connection", {})
    if not isinstance(conn, dict):
        raise ConfigError(f"{where} ({ident}): connection: must be an object")
    responder = entry.get("responder", {})
    if not isinstance(responder, dict):
        raise ConfigError(f"{where} ({ident}): responder: must be an object")
    bends = entry.get("bends", [])
    if not (isinstance(bends, list) and all(isinstance(b, dict) for b in bends)):
        raise ConfigError(f"{where} ({ident}): bends: must be a list of objects")
    try:
        parsed = tuple(Bend.from_dict(b) for b in bends)
    except (ConfigError, TypeError) as e:
        raise ConfigError(f"{where} ({ident}): bends: {e}") from None
    expect = Expect.parse(entry.get("expect", "established"), f"{where} ({ident})")
    selectors = entry.get("selectors", {})
    if not isinstance(selectors, dict):
        raise ConfigError(f"{where} ({ident}): selectors: must be an object")
    for what, fields in (("selectors", selectors), ("connection", conn), ("responder", responder)):
        for key in ("local_ts", "remote_ts") if what != "selectors" else selectors:
            v = fields.get(key, []) if isinstance(fields, dict) else None
            if key not in ("local_ts", "remote_ts") or not (isinstance(v, list) and all(_token(t) for t in v)):
                raise ConfigError(f"{where} ({ident}): {what}.{key}: must be local_ts/remote_ts, a list of "
                                  f"{', '.join(SELECTOR_TOKENS)} (selectors by their place in the lab, each optionally "
                                  f"with [PROTOCOL] or [PROTOCOL/PORT]), not {v!r}")
    if selectors and expect.outcome != "established":
        raise ConfigError(f"{where} ({ident}): selectors: only an established row holds selectors")
    if bool(parsed) != (expect.outcome in ("answered", "dropped")):
        raise ConfigError(f"{where} ({ident}): expect {expect.outcome!r} " +
                          ("needs bends" if not parsed else "is not what a row with bends expects (answered or dropped)"))
    key = entry.get("key")
    if key is not None and key not in KEY_KINDS:
        raise ConfigError(f"{where} ({ident}): key: must be one of {', '.join(KEY_KINDS)}, not {key!r}")
    return CaseRow(ident, Requirement(*rfc), conn, expect, tuple(ends) if ends else None, where, responder, parsed,
                   {k: tuple(v) for k, v in selectors.items()}, key)


def load_table(path: str | Path) -> list[CaseRow]:
    """The rows of a case table file; ConfigError naming the file, row and key for anything wrong."""
    p = Path(path)
    data = load_json(p)
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
        raise ConfigError(f"{p}: expected {{\"_source\": ..., \"cases\": [...]}}")
    rows = [_row(e, f"{p}: cases[{i}]") for i, e in enumerate(data["cases"])]
    seen: set[str] = set()
    for r in rows:
        if r.id in seen:
            raise ConfigError(f"{r.source}: id {r.id!r} appears twice")
        seen.add(r.id)
    return rows


def table_params(path: str | Path) -> list[Any]:
    """pytest params of a table's rows: id = the row's id, marks = its rfc requirement (and its ends)."""
    return [pytest.param(r, id=r.id, marks=_marks([r.requirement.rfc, r.requirement.section, r.requirement.level], r.ends))
            for r in load_table(path)]
