"""What a test's Allure result says beyond allure-pytest's own: its RFC requirements as labels (the Behaviors tab
groups by RFC, section and level), the ends, versions, runtimes and kernels as parameters, and the graded verdict
(harness.report.verdict) as a tag, and the case's steps (harness.report.steps: IKE exchanges, packet batches, checks).
Written into the open result at teardown, where allure-pytest has set its own."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.report.steps import Step, to_allure

#: user properties shown as parameters: the lab's and the pair's (harness.lab.fixtures, harness.cases.plugin)
PARAMETERS = ("ends", "initiator", "responder", "peer_version", "runtime", "kernel")


def requirement_labels(requirements: list[dict]) -> list[tuple[str, str]]:
    """(label, value) pairs for rfc(number, section, level) records: epic RFC, feature section, story level, a tag."""
    out: list[tuple[str, str]] = []
    for q in requirements:
        rfc = f"RFC {q['rfc']}"
        section = f"{rfc} s{q['section']}" if q.get("section") else rfc
        whole = f"{section} {q.get('level') or ''}".strip()
        out += [("epic", rfc), ("feature", section), ("story", whole), ("tag", whole), ("requirement", whole)]
    return list(dict.fromkeys(out))


def parameters(user_properties: list[tuple[str, Any]]) -> list[tuple[str, str]]:
    """(name, value) pairs of the properties a report shows beside the test: PARAMETERS and each end's
    <end>.runtime, <end>.kernel, in the order recorded, the last value of a name winning."""
    found: dict[str, str] = {}
    for k, val in user_properties:
        if val in (None, "") or not isinstance(k, str):
            continue
        if k in PARAMETERS or k.endswith((".runtime", ".kernel", ".peer_version")):
            found[k] = ", ".join(map(str, val)) if isinstance(val, (list, tuple)) else str(val)
    return list(found.items())


def enrich(result: Any, requirements: list[dict], user_properties: list[tuple[str, Any]], verdict: str | None,
           steps: Sequence[Step] = ()) -> None:
    """Add the labels, parameters, verdict tag and steps to an allure_commons TestResult (none twice)."""
    from allure_commons.model2 import Label, Parameter  # noqa: PLC0415 - only with allure-pytest active

    have = {(lb.name, lb.value) for lb in result.labels}
    labels = requirement_labels(requirements) + ([("tag", f"verdict: {verdict}")] if verdict else [])
    result.labels += [Label(name=n, value=val) for n, val in labels if (n, val) not in have]
    named = {p.name for p in result.parameters}
    result.parameters += [Parameter(name=n, value=val) for n, val in parameters(user_properties) if n not in named]
    there = {(st.name, st.start) for st in result.steps}
    result.steps += to_allure(st for st in steps if (st.name, st.start) not in there)
