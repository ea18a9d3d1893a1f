"""Known-answer vector files: open one by its name relative to vectors/, get its list of records.

A vector file is JSON ``{"source": {...}, "vectors": [record, ...]}``; every record carries a
stable ``id`` (unique in its file, used as the pytest parametrize id), the ``document`` and
``section`` it comes from, and its own fields (hex strings for bytes). Negative vectors carry
``"valid": false``. The loader is pure: no registry lookups, no test logic.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from harness.datafile import load_json
from harness.errors import ConfigError

VECTORS_DIR = Path(__file__).resolve().parent.parent / "vectors"

Record = dict[str, Any]
_REQUIRED = ("id", "document", "section")


def load_vectors(name: str, op: str | None = None) -> list[Record]:
    """The records of vectors/<name> (only those whose ``op`` is op, when given); ConfigError if malformed."""
    path = VECTORS_DIR / name
    data = load_json(path)
    records = data.get("vectors") if isinstance(data, dict) else None
    if not isinstance(records, list):
        raise ConfigError(f"{path}: key 'vectors' missing or not a list")
    seen: set[str] = set()
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise ConfigError(f"{path}: vectors[{i}] is not an object")
        for key in _REQUIRED:
            if not isinstance(rec.get(key), str) or not rec[key]:
                raise ConfigError(f"{path}: vectors[{i}]: key {key!r} missing or empty")
        if rec["id"] in seen:
            raise ConfigError(f"{path}: vectors[{i}]: duplicate id {rec['id']!r}")
        seen.add(rec["id"])
    return [r for r in records if op is None or r.get("op") == op]


def load_source(name: str) -> dict[str, Any]:
    """The ``source`` block (document, section, transcribed_from, notes) of vectors/<name>."""
    path = VECTORS_DIR / name
    try:
        return dict(json.loads(path.read_text())["source"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ConfigError(f"{path}: no readable 'source' block ({e.__class__.__name__})") from None


def vector_files(folder: str) -> list[str]:
    """Names (relative to vectors/) of every JSON vector file under vectors/<folder>, sorted."""
    return sorted(str(p.relative_to(VECTORS_DIR)) for p in (VECTORS_DIR / folder).rglob("*.json"))


def load_all(folders: Iterable[str], op: str | None = None) -> list[Record]:
    """Records of every vector file under the given folders (optionally only one op), file order."""
    return [r for folder in folders for name in vector_files(folder) for r in load_vectors(name, op)]


def unhex(record: Record, field: str) -> bytes:
    """The bytes of a hex field of a record; ConfigError naming the record and field if not hex."""
    try:
        return bytes.fromhex(record[field])
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"vector {record.get('id')!r}: field {field!r} missing or not hex") from None


def as_params(records: Iterable[Record]) -> list[Any]:
    """pytest.param per record: id = the record's id, marked rfc(number, section) when it comes from an RFC."""
    import pytest  # only tests call this; the loader itself stays free of pytest

    out = []
    for r in records:
        doc = r["document"]
        marks = [pytest.mark.rfc(int(doc[4:].split()[0]), r["section"], "MUST")] if doc.startswith("RFC ") else []
        out.append(pytest.param(r, id=r["id"], marks=marks))
    return out
