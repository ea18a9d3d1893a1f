"""The regression report: what changed between two runs' results (newly failing, newly passing, other verdict
changes, documented differences that came or went, cases that appeared or vanished), as text, Markdown and HTML."""
from __future__ import annotations

import html
from dataclasses import dataclass, field

from harness.report import verdict as v

#: Verdicts that block a release: a test in one of these that was not in one before is a regression.
FAILING = frozenset({v.FAILED, v.BROKEN, v.XPASS})


@dataclass(frozen=True)
class Change:
    """One test whose verdict differs between the runs (None: absent from that run)."""

    nodeid: str
    case: str
    peer: str
    old: str | None
    new: str | None
    message: str = ""


@dataclass
class Regression:
    """The changes between an old and a new run, grouped as a release manager reads them."""

    newly_failing: list[Change] = field(default_factory=list)
    newly_passing: list[Change] = field(default_factory=list)
    changed: list[Change] = field(default_factory=list)  # other verdict changes (e.g. OK -> UNIMPLEMENTED)
    added: list[Change] = field(default_factory=list)
    removed: list[Change] = field(default_factory=list)
    differences_gone: list[str] = field(default_factory=list)  # documented difference ids the new run no longer hit
    differences_new: list[str] = field(default_factory=list)
    unchanged: int = 0

    @property
    def regressed(self) -> bool:
        """True when a test fails in the new run that did not fail in the old one (or a new test fails)."""
        return bool(self.newly_failing) or any(c.new in FAILING for c in self.added)


def _key(r: dict) -> tuple[str, str]:
    return r.get("case", r["nodeid"]), r.get("peer") or "built-in"


def compare(old: list[dict], new: list[dict]) -> Regression:
    """The changes from old to new, both lists of results.json records, matched by node id."""
    before = {r["nodeid"]: r for r in old}
    after = {r["nodeid"]: r for r in new}
    out = Regression()
    for nodeid in sorted(before.keys() | after.keys()):
        o, n = before.get(nodeid), after.get(nodeid)
        case, peer = _key(n or o)  # type: ignore[arg-type]
        change = Change(nodeid, case, peer, o and o["verdict"], n and n["verdict"], (n or {}).get("message", "")[:2000])
        if o is None:
            out.added.append(change)
        elif n is None:
            out.removed.append(change)
        elif change.old == change.new:
            out.unchanged += 1
        elif change.new in FAILING and change.old not in FAILING:
            out.newly_failing.append(change)
        elif change.old in FAILING and change.new not in FAILING:
            out.newly_passing.append(change)
        else:
            out.changed.append(change)
    ids = lambda rs: {r["difference"]["id"] for r in rs if r.get("difference")}  # noqa: E731
    out.differences_gone = sorted(ids(old) - ids(new))
    out.differences_new = sorted(ids(new) - ids(old))
    return out


SECTIONS = (("newly failing", "newly_failing"), ("newly passing", "newly_passing"), ("other verdict changes", "changed"),
            ("new tests", "added"), ("tests no longer run", "removed"))


def summary(r: Regression) -> str:
    """One line: the counts of each kind of change."""
    parts = [f"{len(getattr(r, attr))} {title}" for title, attr in SECTIONS]
    parts += [f"{len(r.differences_new)} documented differences newly hit", f"{len(r.differences_gone)} no longer hit",
              f"{r.unchanged} unchanged"]
    verdict = "REGRESSION" if r.regressed else "no regression"
    return f"{verdict}: " + ", ".join(parts)


def _verdicts(c: Change) -> str:
    return f"{c.old or '(absent)'} -> {c.new or '(absent)'}"


def to_text(r: Regression) -> str:
    """For the terminal: the summary, then each change with its message's first line."""
    lines = [summary(r)]
    for title, attr in SECTIONS:
        changes = getattr(r, attr)
        if changes:
            lines += ["", f"{title}:"]
            lines += [f"  {c.peer:16} {c.case}: {_verdicts(c)}" + (f"\n      {c.message.splitlines()[0]}" if c.message else "")
                      for c in changes]
    for title, ids in (("documented differences newly hit", r.differences_new), ("no longer hit", r.differences_gone)):
        if ids:
            lines += ["", f"{title}: {', '.join(ids)}"]
    return "\n".join(lines) + "\n"


def to_markdown(r: Regression) -> str:
    """For CI summaries and pull requests."""
    lines = [f"**{summary(r)}**"]
    for title, attr in SECTIONS:
        changes = getattr(r, attr)
        if changes:
            lines += ["", f"### {title}", "", "| peer | case | verdict |", "|---|---|---|"]
            lines += [f"| {c.peer} | {c.case} | {_verdicts(c)} |" for c in changes]
    for title, ids in (("documented differences newly hit", r.differences_new), ("documented differences no longer hit", r.differences_gone)):
        if ids:
            lines += ["", f"### {title}", "", *(f"- {i}" for i in ids)]
    return "\n".join(lines) + "\n"


def to_html(r: Regression, old_label: str, new_label: str) -> str:
    """A self-contained page (no outside request)."""
    esc = html.escape
    parts = [f"<!doctype html><meta charset=utf-8><title>ipsec-interop regression</title>"
             "<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
             "padding:3px 6px}td.case{font-family:monospace}pre{margin:0;white-space:pre-wrap}</style>",
             f"<h1>Regression report</h1><p>old: <code>{esc(old_label)}</code><br>new: <code>{esc(new_label)}</code></p>",
             f"<p><b style='color:{'#c62828' if r.regressed else '#2e7d32'}'>{esc(summary(r))}</b></p>"]
    for title, attr in SECTIONS:
        changes = getattr(r, attr)
        if changes:
            rows = "".join(f"<tr><td>{esc(c.peer)}</td><td class=case>{esc(c.case)}</td><td>{esc(_verdicts(c))}</td>"
                           f"<td><pre>{esc(c.message[:600])}</pre></td></tr>" for c in changes)
            parts.append(f"<h2>{esc(title)}</h2><table><tr><th>peer</th><th>case</th><th>verdict</th><th>message</th></tr>{rows}</table>")
    for title, ids in (("documented differences newly hit", r.differences_new), ("documented differences no longer hit", r.differences_gone)):
        if ids:
            parts.append(f"<h2>{esc(title)}</h2><ul>{''.join(f'<li>{esc(i)}</li>' for i in ids)}</ul>")
    return "\n".join(parts) + "\n"
