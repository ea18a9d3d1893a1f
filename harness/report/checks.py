"""Checks a case makes without failing it: a SHOULD not met makes a passing test NON-STRICT (Autobahn's grade)."""
from __future__ import annotations

from typing import Any

NON_STRICT_KEY = "non_strict"


def should(request_or_item: Any, condition: bool, requirement: str, message: str) -> bool:
    """Record ("non_strict", "<requirement>: <message>") on the test when condition is false; returns condition."""
    item = getattr(request_or_item, "node", request_or_item)
    if not condition:
        item.user_properties.append((NON_STRICT_KEY, f"{requirement}: {message}"))
    return bool(condition)
