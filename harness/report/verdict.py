"""Graded verdicts, Autobahn-style, kept honest the way Allure splits them.

One verdict per pytest phase report; a test's verdict is the worst of its phases (ORDER).

| what happened                                                   | verdict        |
|-----------------------------------------------------------------|----------------|
| a PeerFault (Refused, NoAnswer, ...) in any phase               | FAILED         |
| a plain AssertionError (or pytest.fail) in call or teardown     | FAILED         |
| a plain AssertionError in setup (a fixture's own check)         | BROKEN         |
| Unimplemented (UnsupportedProposal/Feature) in any phase, or a  | UNIMPLEMENTED  |
|   skip whose reason starts with "unimplemented:"                |                |
| any other skip (CannotReconfigure becomes one)                  | SKIPPED        |
| passed, with should() records of SHOULDs not met                | NON-STRICT     |
| an xfail that failed as expected                                | XFAIL          |
| ... whose reason names a documented difference                  | DOCUMENTED     |
| an xfail that passed (strict or not): stale expectation         | XPASS          |
|   ... but for an intermittent documented difference             | OK             |
| any other exception, including in a documented case             | BROKEN         |

The collector (harness.report.collector) turns Unimplemented and CannotReconfigure into skips before
anyone reads the report, so the terminal and Allure show them as skips with their reasons.
"""
from __future__ import annotations

OK, FAILED, BROKEN, SKIPPED, UNIMPLEMENTED, XFAIL, XPASS = (
    "OK", "FAILED", "BROKEN", "SKIPPED", "UNIMPLEMENTED", "XFAIL", "XPASS")
NON_STRICT, DOCUMENTED = "NON-STRICT", "DOCUMENTED"

#: Worst first: a case's row shows the worst verdict among its phases. NON-STRICT (the peer missed a
#: SHOULD) ranks above the verdicts that say nothing against the peer; DOCUMENTED (a known, explained
#: FAILED) above a plain XFAIL.
ORDER = (BROKEN, FAILED, XPASS, NON_STRICT, UNIMPLEMENTED, DOCUMENTED, XFAIL, SKIPPED, OK)

UNIMPLEMENTED_PREFIX = "unimplemented:"
DOCUMENTED_PREFIX = "documented difference"
INTERMITTENT_PREFIX = "documented difference (intermittent)"  # a non-strict xfail: its pass is OK
STRICT_XPASS_PREFIX = "[XPASS(strict)]"

#: What a phase raised (harness.report.collector.classify names it).
PEER, ASSERTION, ERROR, NONE = "peer", "assertion", "error", ""


def worst(a: str | None, b: str) -> str:
    """The worse of two verdicts (None counts as nothing yet)."""
    return b if a is None or ORDER.index(b) < ORDER.index(a) else a


def from_outcome(outcome: str, when: str, cause: str, skip_reason: str = "", xfail_reason: str | None = None,
                 longrepr: str = "") -> str:
    """The verdict of one phase report: outcome and phase, what was raised (a cause), skip and xfail reasons."""
    if outcome == "passed":
        return XPASS if xfail_reason is not None and not xfail_reason.startswith(INTERMITTENT_PREFIX) else OK
    if outcome == "skipped":
        if xfail_reason is None:
            return UNIMPLEMENTED if skip_reason.lower().startswith(UNIMPLEMENTED_PREFIX) else SKIPPED
        if when == "setup" and cause == ASSERTION:
            return BROKEN  # a fixture's own check failed: the xfail does not excuse the harness
        return DOCUMENTED if xfail_reason.startswith(DOCUMENTED_PREFIX) else XFAIL
    if longrepr.startswith(STRICT_XPASS_PREFIX):
        return XPASS
    if cause == PEER or (cause == ASSERTION and when != "setup"):
        return FAILED
    return BROKEN
