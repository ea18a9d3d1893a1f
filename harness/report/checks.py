"""Checks a case makes without failing it: a SHOULD not met makes a passing test NON-STRICT (Autobahn's grade).
Each check is a step of the test's Allure result too (harness.report.steps), failed when not met."""
from __future__ import annotations

from typing import Any

from harness.report import steps

NON_STRICT_KEY = "non_strict"


def should(request_or_item: Any, condition: bool, requirement: str, message: str) -> bool:
    """Record ("non_strict", "<requirement>: <message>") on the test when condition is false, and the check as a
    step either way; returns condition."""
    item = getattr(request_or_item, "node", request_or_item)
    name = f"check {requirement}: met" if condition else f"check {requirement}: not met: {message}"
    steps.record(item, [steps.check_step(name, bool(condition))])
    if not condition:
        item.user_properties.append((NON_STRICT_KEY, f"{requirement}: {message}"))
    return bool(condition)
