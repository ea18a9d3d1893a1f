"""Graded verdicts, Autobahn-style, kept honest the way Allure splits them.

FAILED is a conformance violation (an assertion about the peer's behaviour did not hold);
BROKEN is a fault of the harness or the lab (any other exception); UNIMPLEMENTED is a skip whose
reason starts with "unimplemented:" (the peer lacks the feature); SKIPPED any other skip.
"""
from __future__ import annotations

OK, FAILED, BROKEN, SKIPPED, UNIMPLEMENTED, XFAIL, XPASS = (
    "OK", "FAILED", "BROKEN", "SKIPPED", "UNIMPLEMENTED", "XFAIL", "XPASS")

#: Worst first: a case's row shows the worst verdict among its phases.
ORDER = (BROKEN, FAILED, XPASS, UNIMPLEMENTED, XFAIL, SKIPPED, OK)

UNIMPLEMENTED_PREFIX = "unimplemented:"


def worst(a: str | None, b: str) -> str:
    """The worse of two verdicts (None counts as nothing yet)."""
    return b if a is None or ORDER.index(b) < ORDER.index(a) else a


def from_outcome(outcome: str, when: str, is_assertion: bool, skip_reason: str = "", xfail: bool = False) -> str:
    """The verdict of one pytest phase report."""
    if outcome == "passed":
        return XPASS if xfail else OK
    if outcome == "skipped":
        if xfail:
            return XFAIL
        return UNIMPLEMENTED if skip_reason.lower().startswith(UNIMPLEMENTED_PREFIX) else SKIPPED
    return FAILED if (when == "call" and is_assertion) else BROKEN
