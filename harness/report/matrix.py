"""The interop matrix (peer x case) and one detail page per cell, from the collector's results JSON."""
from __future__ import annotations

import html
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ConfigError
from harness.report import verdict as v

NO_PEER = "built-in"  # tests that ran against no peer: the stack's own checks
COLOURS = {v.OK: "#2e7d32", v.FAILED: "#c62828", v.BROKEN: "#ef6c00", v.XPASS: "#ad1457", v.NON_STRICT: "#9e9d24",
           v.UNIMPLEMENTED: "#6a1b9a", v.DOCUMENTED: "#1565c0", v.XFAIL: "#5d4037", v.SKIPPED: "#757575"}
LEGEND = {
    v.FAILED: "the peer violated the checked requirement, refused what the case needs, or did not answer",
    v.BROKEN: "the harness or lab failed, not the peer",
    v.XPASS: "expected to fail, but passed: the expectation (or documented difference) is stale",
    v.NON_STRICT: "passed, but a SHOULD was not met",
    v.UNIMPLEMENTED: "the peer lacks the feature",
    v.DOCUMENTED: "failed as a documented difference of this peer says it does",
    v.XFAIL: "failed as expected",
    v.SKIPPED: "not run, with its reason",
}


@dataclass(frozen=True)
class Matrix:
    """Results arranged by area and case (rows) and peer (columns)."""

    peers: list[str]
    peer_info: dict[str, dict]
    rows: dict[str, dict[str, dict[str, dict]]]  # area -> case -> peer -> record
    totals: dict[str, int]
    by_requirement: dict[str, dict[str, int]]
    coverage: dict[str, dict[str, dict[str, int]]]  # requirement -> peer -> verdict -> tests (the coverage table)
    differences: list[dict]  # documented differences that covered a test: id, case, peer, verdict, reason, ...


def load_results(path: Path) -> list[dict]:
    """The collector's records; ConfigError naming the file when it is missing or not results."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no results file (did pytest run with --results-json?)") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not JSON: {e}") from None
    if not isinstance(data, list) or not all(isinstance(r, dict) and "nodeid" in r and "verdict" in r for r in data):
        raise ConfigError(f"{path}: expected a list of test records with 'nodeid' and 'verdict'")
    return data


def build(records: list[dict]) -> Matrix:
    """Arrange records into the matrix, with totals per verdict and per RFC requirement."""
    rows: dict[str, dict[str, dict[str, dict]]] = defaultdict(lambda: defaultdict(dict))
    info: dict[str, dict] = {}
    by_req: dict[str, Counter] = defaultdict(Counter)
    cover: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    diffs = []
    for r in records:
        peer = r.get("peer") or NO_PEER
        if r.get("difference"):
            diffs.append({**r["difference"], "case": r.get("case", r["nodeid"]), "peer": peer, "verdict": r["verdict"]})
        rows[r.get("area", "other")][r.get("case", r["nodeid"])][peer] = r
        i = info.setdefault(peer, {})
        for k in ("peer_version", "runtime", "kernel"):  # a peer may run under several runtimes in one session
            if r.get(k) and str(r[k]) not in i.get(k, "").split(", "):
                i[k] = ", ".join(filter(None, (i.get(k), str(r[k]))))
        for q in r.get("requirements", []):
            key = f"{_section(q)} {q['level']}".strip()
            by_req[key][r["verdict"]] += 1
            cover[key][peer][r["verdict"]] += 1
    peers = sorted(p for p in info if p != NO_PEER) + ([NO_PEER] if NO_PEER in info else [])
    totals = Counter(r["verdict"] for r in records)
    return Matrix(peers, info, {a: dict(c) for a, c in sorted(rows.items())}, dict(totals),
                  {k: dict(c) for k, c in sorted(by_req.items(), key=lambda kv: _requirement_order(kv[0]))},
                  {k: {p: dict(c) for p, c in cs.items()} for k, cs in sorted(cover.items(), key=lambda kv: _requirement_order(kv[0]))},
                  sorted(diffs, key=lambda d: (d["id"], d["peer"], d["case"])))


def _requirement_order(key: str) -> tuple[int, list[int], str]:
    """RFC number, then section numerically (s2.10 after s2.9), then level."""
    m = re.match(r"RFC (\d+) s([\d.]+)", key)
    return (int(m.group(1)), [int(x) for x in m.group(2).split(".") if x], key) if m else (0, [], key)


PASSING = (v.OK, v.NON_STRICT, v.DOCUMENTED, v.XFAIL)  # a requirement held, or its deviation known and documented


def coverage_cell(cells: dict[str, int]) -> tuple[str, str]:
    """A coverage cell's text ('held/checked', the worst verdict beside) and its CSS class: the worst verdict's."""
    checked = sum(n for k, n in cells.items() if k not in (v.SKIPPED, v.UNIMPLEMENTED))
    held = sum(n for k, n in cells.items() if k in PASSING)
    counted = [k for k in cells if k not in (v.SKIPPED, v.UNIMPLEMENTED)] or list(cells)
    worst = min(counted, key=v.ORDER.index)
    text = f"{held}/{checked}" if checked else "n/a"
    return (text if worst in (v.OK, v.SKIPPED) else f"{text} {worst}"), _css_class(worst)


def section_of(cells: dict[str, dict]) -> str:
    """The RFC section a case row checks ("RFC 4303 s3.4.3"): its records' first named requirement; "" if none."""
    for rec in cells.values():
        for q in rec.get("requirements", []):
            return _section(q)
    return ""


def _section(q: dict) -> str:
    """A requirement's RFC section as the matrix names it: "RFC 4303 s3.4.3"."""
    return f"RFC {q['rfc']} s{q['section']}"


def by_section(cases: dict[str, dict[str, dict]]) -> list[tuple[str, list[tuple[str, dict[str, dict]]]]]:
    """An area's case rows grouped by RFC section (numerically; rows naming none last), each group sorted by case."""
    groups: dict[str, list] = defaultdict(list)
    for case, cells in cases.items():
        groups[section_of(cells)].append((case, cells))
    order = sorted(groups, key=lambda k: (k == "", _requirement_order(k)))
    return [(k, sorted(groups[k])) for k in order]


def _css_class(verdict: str) -> str:
    return "v-" + verdict.lower()


def _slug(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", "__".join(parts))[:180]


def _cell(rec: dict | None, link: str) -> str:
    if rec is None:
        return "<td class=none>&ndash;</td>"
    verdict = rec["verdict"]
    return (f"<td class={_css_class(verdict)}><a href='{link}' title='{html.escape(rec.get('message', '')[:300])}'>"
            f"{verdict}</a></td>")


def write(matrix: Matrix, out: Path) -> Path:
    """Write matrix.html, matrix.json, matrix.md and details/*.html under out; returns matrix.html."""
    out.mkdir(parents=True, exist_ok=True)
    details = out / "details"
    details.mkdir(exist_ok=True)
    esc = html.escape
    head = "".join(
        f"<th>{esc(p)}<br><small>{esc(matrix.peer_info[p].get('peer_version', ''))}<br>"
        f"{esc(matrix.peer_info[p].get('runtime', ''))} {esc(matrix.peer_info[p].get('kernel', ''))}</small></th>"
        for p in matrix.peers)
    body = []
    for area, cases in matrix.rows.items():
        body.append(f"<tr><th class=area colspan={len(matrix.peers) + 1}>{esc(area)}</th></tr>")
        for section, rows in by_section(cases):
            body.append(f"<tr><th class=section colspan={len(matrix.peers) + 1}>{esc(section or 'no RFC section named')}"
                        "</th></tr>")
            body += [_row(out, area, case, cells, matrix) for case, cells in rows]
    totals = ", ".join(f"{k}: {n}" for k, n in sorted(matrix.totals.items(), key=lambda kv: v.ORDER.index(kv[0])))
    reqs = "".join(f"<tr><td>{esc(k)}</td>" + "".join(
        (lambda t: f"<td class={t[1]}>{esc(t[0])}</td>")(coverage_cell(cells[p])) if p in cells else "<td class=none>&ndash;</td>"
        for p in matrix.peers) + "</tr>" for k, cells in matrix.coverage.items())
    diffs = "".join(
        f"<tr><td>{esc(d['id'])}</td><td class=case>{esc(d['case'])}</td><td>{esc(d['peer'])}</td>"
        f"<td class={_css_class(d['verdict'])}>{esc(d['verdict'])}</td><td>{esc(d['reason'])}</td>"
        f"<td>{esc(d['requirement'])}</td><td>{esc(d['evidence'])}</td></tr>" for d in matrix.differences)
    colours = "".join(f"td.{_css_class(k)}{{background:{c}}}" for k, c in COLOURS.items())
    legend = " ".join(f"<span class=legend><b class={_css_class(k)}>{esc(k)}</b> {esc(t)}.</span>" for k, t in LEGEND.items())
    page = f"""<!doctype html><meta charset=utf-8><title>ipsec-interop matrix</title>
<style>body{{font-family:sans-serif;margin:1em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 6px}}
td a{{color:#fff;text-decoration:none;font-weight:bold}}th.area{{text-align:left;background:#ddd}}th.section{{text-align:left;background:#f4f4f4;font-weight:normal}}td.case{{font-family:monospace}}td.none{{color:#999;text-align:center}}td[class^=v-]{{color:#fff}}
{colours}{colours.replace("td.", "b.")}b[class^=v-]{{color:#fff;padding:0 3px}}.legend{{display:inline-block;margin-right:1em}}</style>
<h1>Interop matrix</h1><p>{esc(totals)}</p>
<table><tr><th>case</th>{head}</tr>{''.join(body)}</table>
<p><small>{legend}</small></p>
<h2>Documented differences</h2><table><tr><th>id</th><th>case</th><th>peer</th><th>verdict</th><th>reason</th>
<th>requirement</th><th>evidence</th></tr>{diffs or "<tr><td colspan=7>none covered a test in this run</td></tr>"}</table>
<h2>Requirements checked per peer</h2><p>Each cell: tests whose requirement held (passed, SHOULD missed, or a documented
difference) of those that ran against the peer; the worst verdict beside it. Skipped and unimplemented tests are not counted.</p>
<table><tr><th>requirement</th>{''.join(f"<th>{esc(p)}</th>" for p in matrix.peers)}</tr>{reqs}</table>
"""
    (out / "matrix.html").write_text(page)
    (out / "matrix.json").write_text(json.dumps(
        {"peers": matrix.peers, "peer_info": matrix.peer_info, "totals": matrix.totals,
         "by_requirement": matrix.by_requirement, "coverage": matrix.coverage, "differences": matrix.differences,
         "rows": {a: {c: {p: r["verdict"] for p, r in cells.items()} for c, cells in cs.items()}
                  for a, cs in matrix.rows.items()}}, indent=1))
    (out / "matrix.md").write_text(to_markdown(matrix))
    return out / "matrix.html"


def _row(out: Path, area: str, case: str, cells: dict[str, dict], matrix: Matrix) -> str:
    """One case's row of matrix.html, writing the detail page behind each of its cells."""
    tds = []
    for p in matrix.peers:
        rec = cells.get(p)
        link = f"details/{_slug(area, case, p)}.html"
        if rec is not None:
            (out / link).write_text(_detail_page(area, case, p, rec, matrix.peer_info.get(p, {})))
        tds.append(_cell(rec, link))
    return f"<tr><td class=case>{html.escape(case)}</td>{''.join(tds)}</tr>"


def _detail_page(area: str, case: str, peer: str, rec: dict, info: dict) -> str:
    esc = html.escape
    arts = "".join(f"<li><a href='../{esc(a)}'>{esc(a)}</a></li>" for a in rec.get("artifacts", []))
    reqs = "".join(f"<li>RFC {esc(str(q['rfc']))} section {esc(q['section'])} {esc(str(q['level']))}</li>"
                   for q in rec.get("requirements", []))
    broke = "".join(f"<p>{label}: <b>{esc(str(rec[k]))}</b></p>" for k, label in (
        ("requirement", "requirement broken"), ("notify", "error Notify received")) if rec.get(k))
    shoulds = "".join(f"<li>{esc(n)}</li>" for n in rec.get("non_strict", []))
    d = rec.get("difference")
    documented = (f"<h3>Documented difference {esc(d['id'])}</h3><p>{esc(d['reason'])} ({esc(d['requirement'])})</p>"
                  f"<pre>{esc(d['evidence'])}</pre>") if d else ""
    return f"""<!doctype html><meta charset=utf-8><title>{esc(case)} / {esc(peer)}</title>
<style>body{{font-family:sans-serif;margin:1em}}pre{{background:#f5f5f5;padding:1em;overflow:auto}}</style>
<p><a href='../matrix.html'>&larr; matrix</a></p><h1>{esc(case)}</h1>
<p>area {esc(area)} &middot; peer {esc(peer)} {esc(str(rec.get('peer_version', info.get('peer_version', ''))))}
&middot; runtime {esc(str(rec.get('runtime', info.get('runtime', ''))))} &middot; kernel {esc(str(rec.get('kernel', info.get('kernel', ''))))}</p>
<h2 style='color:{COLOURS[rec['verdict']]}'>{esc(rec['verdict'])}</h2><p>{rec.get('duration', 0):.3f} s</p>
{broke}<h3>Requirements</h3><ul>{reqs or '<li>none named</li>'}</ul>
{f"<h3>SHOULDs not met</h3><ul>{shoulds}</ul>" if shoulds else ""}{documented}
<h3>Message</h3><pre>{esc(rec.get('message') or '')}</pre><h3>Artifacts</h3><ul>{arts or '<li>none</li>'}</ul>
<p><code>{esc(rec['nodeid'])}</code></p>"""


def to_markdown(matrix: Matrix) -> str:
    """The matrix as a Markdown table (for terminals and CI summaries)."""
    lines = ["| case | RFC section | " + " | ".join(matrix.peers) + " |", "|---|---|" + "---|" * len(matrix.peers)]
    for area, cases in matrix.rows.items():
        for section, rows in by_section(cases):
            lines += [f"| {area}: {case} | {section or '-'} | " +
                      " | ".join(cells[p]["verdict"] if p in cells else "-" for p in matrix.peers) + " |"
                      for case, cells in rows]
    if matrix.differences:
        lines += ["", *(f"- documented difference {d['id']} ({d['peer']}, {d['case']}): {d['verdict']}: {d['reason']}"
                        for d in matrix.differences)]
    return "\n".join(lines) + "\n"
