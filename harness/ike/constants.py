"""IKEv2 IANA registries (payload, exchange, notify, ID, auth, transform, CP, TS types), loaded once from JSON.

Each table is a `Registry` read from harness/ike/registry/<file>.json on first use:
``PAYLOAD["SA"] == 33``, ``PAYLOAD.name(33) == "SA"``, ``NOTIFY.name(16390) == "COOKIE"``.
Module attributes (lazy): PAYLOAD, EXCHANGE, NOTIFY, ID_TYPE, AUTH_METHOD, TRANSFORM_TYPE,
TRANSFORM_ATTRIBUTE, PROTOCOL, CERT_ENCODING, TS_TYPE, CFG_TYPE, CFG_ATTRIBUTE.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from harness.errors import ConfigError, UnknownName

REGISTRY_DIR = Path(__file__).resolve().parent / "registry"

_FILES = {"PAYLOAD": "payload_types", "EXCHANGE": "exchange_types", "NOTIFY": "notify_types", "ID_TYPE": "id_types",
          "AUTH_METHOD": "auth_methods", "TRANSFORM_TYPE": "transform_types",
          "TRANSFORM_ATTRIBUTE": "transform_attributes", "PROTOCOL": "protocol_ids", "CERT_ENCODING": "cert_encodings",
          "TS_TYPE": "ts_types", "CFG_TYPE": "cfg_types", "CFG_ATTRIBUTE": "cfg_attributes"}

ERROR_NOTIFY_MAX = 16383  # RFC 7296 s3.10.1: types below 16384 are errors, the rest status


@dataclass(frozen=True)
class Registry:
    """One IANA table: value <-> name, with each entry's reference (RFC and section)."""

    title: str
    by_value: Mapping[int, str]
    by_name: Mapping[str, int]
    refs: Mapping[int, str]

    def __getitem__(self, name: str) -> int:
        """The value of a name; UnknownName if the table has none."""
        try:
            return self.by_name[name]
        except KeyError:
            raise UnknownName(f"{self.title}: no entry named {name!r}") from None

    def __contains__(self, key: object) -> bool:
        return key in self.by_value or key in self.by_name

    def name(self, value: int) -> str:
        """The name of a value, or the decimal number for values the table does not name."""
        return self.by_value.get(value, str(value))

    def value(self, ref: int | str) -> int:
        """A value given as a number or a name (names checked, numbers passed through)."""
        return ref if isinstance(ref, int) else self[ref]


@cache
def registry(file: str) -> Registry:
    """The table in harness/ike/registry/<file>.json (parsed once)."""
    path = REGISTRY_DIR / f"{file}.json"
    try:
        data = json.loads(path.read_text())
        entries = [(int(e["value"]), str(e["name"]), str(e.get("ref", ""))) for e in data["entries"]]
        title = str(data["registry"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"{path}: not a registry table ({e.__class__.__name__}: {e})") from None
    return Registry(title, MappingProxyType({v: n for v, n, _ in entries}),
                    MappingProxyType({n: v for v, n, _ in entries}), MappingProxyType({v: r for v, _, r in entries}))


def __getattr__(attr: str) -> Registry:
    if attr in _FILES:
        return registry(_FILES[attr])
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
