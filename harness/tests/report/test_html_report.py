"""The HTML reports as a person opens them: a scratch suite with one test of each verdict runs in pytester with
allure-pytest and the collector; its Allure results become the single-file Allure page (harness.report.html) and
its results.json the interop matrix; both open from file:// in headless Chromium with the network closed
(harness.tools.chromium), where the totals, the verdict categories and the failure's evidence must show and no
request may leave the page. Without Chromium or Allure 2 (harness/run.sh test installs both) the browser tests skip."""
from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.report import allure_meta, html, matrix
from harness.report.offline import outside_references
from harness.tools.chromium import Browser, find_chromium

pytest_plugins = ["pytester"]

SCRATCH = Path(__file__).parent / "html_suite"
CONFTEST = ('pytest_plugins = ["harness.report.collector"]\n'
            'def pytest_configure(config):\n'
            '    config.addinivalue_line("markers", "rfc(number, section, level): requirement")\n')
#: the Allure category (harness/report/allure_categories.json) each verdict of the scratch suite lands in
CATEGORIES = {"FAILED": "Conformance violations (the peer broke a requirement)",
              "BROKEN": "Harness or lab faults (not the peer's fault)",
              "UNIMPLEMENTED": "Unimplemented by the peer",
              "NON-STRICT": "Non-strict (a SHOULD not met)",
              "DOCUMENTED": "Documented differences (known, explained deviations)",
              "SKIPPED": "Skipped with a reason"}
EVIDENCE = ("capture.pcap", "capture.pcap.txt", "capture.decrypted.pcap", "capture.decrypted.pcap.txt", "keys.json",
            "strongswan-6.0.log")
FAILURE = "test_ike_sa[strongswan-6.0]"
#: Chromium's own services: with only about:blank open it contacted clients2.google.com (its clock),
#: update.googleapis.com (component updates) and accounts.google.com (sign-in), whatever the flags. Proxy connections
#: to these domains are the browser's; the page's own requests, to any host, are in its DevTools request log.
BROWSER_OWN = ("google.com", "googleapis.com", "gvt1.com")


def _allure() -> Path | None:
    try:
        return html.find_allure()
    except html.ReportToolMissing:
        return None


ALLURE = _allure()
CHROMIUM = find_chromium()
needs_allure = pytest.mark.skipif(ALLURE is None, reason="Allure 2 is not installed (harness/run.sh installs it in .tools)")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian package chromium)")


@pytest.fixture
def scratch_run(pytester: pytest.Pytester) -> Path:
    """The scratch suite's report folder: results.json, allure-results/, captures/ and the matrix."""
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_suite=(SCRATCH / "scratch_suite.py").read_text())
    d = pytester.mkdir("suites").joinpath("differences")
    d.mkdir()
    (d / "libreswan.json").write_text((SCRATCH / "libreswan.json").read_text())
    out = pytester.path / "reports"
    pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--results-json={out / 'results.json'}",
                                  f"--alluredir={out / 'allure-results'}")
    assert (out / "results.json").exists(), "the scratch run wrote no results"
    matrix.write(matrix.build(matrix.load_results(out / "results.json")), out)
    return out


def _embedded_cases(page: str) -> dict[str, dict]:
    """The test results a single-file Allure page carries (base64 JSON), by test name."""
    found = {}
    for m in re.finditer(r"d\('data/test-cases/[0-9a-f]+\.json','([^']*)'\)", page):
        r = json.loads(base64.b64decode(m.group(1)))
        found[r["name"]] = r
    return found


def _closed_network(browser: Browser, page) -> list[str]:
    """What left the page: its own requests to anything but itself, and requests through the proxy to hosts not
    Chromium's own (a connection that sent nothing asked for nothing)."""
    browser.settle(2.0)
    proxied = [line for line in browser.proxy.seen if line.strip() and line != "(nothing sent)"
               and not ((m := re.match(r"\S+ (?:https?://)?([^/:\s]+)", line))
                       and any(m.group(1) == d or m.group(1).endswith("." + d) for d in BROWSER_OWN))]
    return page.outside_requests() + proxied


# -- lab-free, tool-free --------------------------------------------------------------------------------------

def test_outside_references_finds_what_a_browser_would_fetch() -> None:
    page = ("<html><head><script async src='https://www.googletagmanager.com/gtag/js?id=G-X'></script>"
            "<link rel=stylesheet href='//cdn.example/x.css'><style>body{background:url(img.png)}</style></head>"
            "<body><img srcset='data:image/png;base64,AA 1x, https://img.example/a.png 2x'>"
            "<script src='data:text/javascript;base64," + base64.b64encode(
                b"fetch('https://collector.example/e');var ns='http://www.w3.org/2000/svg'").decode() + "'></script>"
            "<svg><path fill='url(%23grad)'/></svg><a href='#top'>top</a></body></html>")
    assert outside_references(page) == ["https://www.googletagmanager.com/gtag/js?id=G-X", "//cdn.example/x.css",
                                        "img.png", "https://img.example/a.png", "https://collector.example/e"]
    assert outside_references("<p><a href='#x'>x</a><img src='data:image/png;base64,AA'></p>") == []


def test_a_missing_tool_is_a_typed_error_and_a_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IPSEC_INTEROP_ALLURE", str(tmp_path / "no-allure"))
    (tmp_path / "allure-results").mkdir()
    (tmp_path / "allure-results" / "x-result.json").write_text("{}")
    with pytest.raises(html.ReportToolMissing, match="not installed"):
        html.find_allure()
    assert html.write_for(tmp_path).startswith("allure report: not written: Allure 2.46.1 is not installed")
    with pytest.raises(ConfigError, match="no Allure results"):
        html.generate(tmp_path / "none", tmp_path / "out")


def test_requirement_labels_and_parameters() -> None:
    labels = allure_meta.requirement_labels([{"rfc": 7296, "section": "2.3", "level": "MUST"}])
    assert ("epic", "RFC 7296") in labels and ("feature", "RFC 7296 s2.3") in labels
    assert ("story", "RFC 7296 s2.3 MUST") in labels and ("tag", "RFC 7296 s2.3 MUST") in labels
    props = [("peer", "x"), ("initiator", "builtin"), ("strongswan-6.0.runtime", "uml"), ("kernel", ""),
             ("runtime", "uml"), ("lab_setup_s", 1.0), ("artifact", "a.pcap")]
    assert allure_meta.parameters(props) == [("initiator", "builtin"), ("strongswan-6.0.runtime", "uml"),
                                             ("runtime", "uml")]


# -- the scratch run's Allure results and report -------------------------------------------------------------

def test_allure_results_carry_requirements_parameters_and_evidence(scratch_run: Path) -> None:
    results = [json.loads(p.read_text()) for p in (scratch_run / "allure-results").glob("*-result.json")]
    failed = next(r for r in results if r["name"] == FAILURE)
    labels = {(lb["name"], lb["value"]) for lb in failed["labels"]}
    assert {("epic", "RFC 7296"), ("feature", "RFC 7296 s2.3"), ("tag", "verdict: FAILED")} <= labels
    assert {(p["name"], p["value"]) for p in failed["parameters"]} >= {("peer_version", "6.0.1"), ("runtime", "uml"),
                                                                       ("kernel", "6.12.0-uml")}
    types = {a["name"]: a["type"] for a in failed["attachments"]}
    assert types == {"capture.pcap": "application/vnd.tcpdump.pcap", "capture.pcap.txt": "text/plain",
                     "capture.decrypted.pcap": "application/vnd.tcpdump.pcap",
                     "capture.decrypted.pcap.txt": "text/plain", "keys.json": "application/json",
                     "strongswan-6.0.log": "text/plain"}
    text = next(a for a in failed["attachments"] if a["name"] == "capture.pcap.txt")
    assert "198.18.0.2 > 198.18.0.1 esp" in (scratch_run / "allure-results" / text["source"]).read_text()
    env = (scratch_run / "allure-results" / "environment.properties").read_text()
    assert "strongswan-6.0.peer_version=6.0.1" in env and "libreswan-5.2.kernel=6.12.0-uml" in env


@needs_allure
def test_the_report_is_one_page_with_every_verdict_and_no_outside_reference(scratch_run: Path) -> None:
    r = html.generate(scratch_run / html.RESULTS, scratch_run / html.REPORT)
    assert r.page == scratch_run / "allure-report" / "index.html" and sorted(os.listdir(r.page.parent)) == ["index.html"]
    page = r.page.read_text()
    assert outside_references(page) == []
    cases = _embedded_cases(page)
    records = matrix.load_results(scratch_run / "results.json")
    assert len(cases) == len(records) == 12
    for rec in records:
        name = rec["nodeid"].split("::", 1)[1]
        got = [c["name"] for c in cases[name]["extra"]["categories"]]
        assert got == ([CATEGORIES[rec["verdict"]]] if rec["verdict"] in CATEGORIES else []), name


# -- in the browser ------------------------------------------------------------------------------------------

@pytest.mark.browser
@needs_chromium
def test_the_browser_check_sees_requests_of_scripts_workers_and_frames(tmp_path: Path) -> None:
    page = tmp_path / "leaky.html"
    page.write_text("<script>fetch('https://script.example/a').catch(() => {});"
                    "new Worker(URL.createObjectURL(new Blob([\"fetch('https://worker.example/b').catch(() => {})\"],"
                    " {type: 'text/javascript'})));</script>"
                    "<iframe src='data:text/html,<img src=https://frame.example/c.png>'></iframe>")
    with Browser() as b:
        p = b.open(page.as_uri())
        left = _closed_network(b, p)
    for url in ("https://script.example/a", "https://worker.example/b", "https://frame.example/c.png"):
        assert url in left, (url, left)
    assert any("script.example" in line for line in b.proxy.seen), b.proxy.seen  # and it reached the proxy, nowhere else


@pytest.mark.browser
@needs_allure
@needs_chromium
def test_both_reports_render_offline_with_totals_and_the_failures_evidence(scratch_run: Path, tmp_path: Path) -> None:
    report = html.generate(scratch_run / html.RESULTS, scratch_run / html.REPORT).page
    uid = _embedded_cases(report.read_text())[FAILURE]["uid"]
    totals = matrix.build(matrix.load_results(scratch_run / "results.json")).totals
    with Browser() as b:
        page = b.open(report.as_uri())
        overview = page.wait_for("document.body.innerText.includes('test cases') && document.body.innerText")
        assert re.search(r"\b12\s+test cases", overview), overview[:500]
        for verdict, name in CATEGORIES.items():
            assert name in overview, f"{verdict}: category {name!r} not on the overview"
        assert _closed_network(b, page) == []

        failure = b.open(f"{report.as_uri()}#testresult/{uid}")
        shown = failure.wait_for("document.body.innerText.includes('strongswan-6.0.log') && document.body.innerText")
        for name in EVIDENCE:
            assert name in shown, f"{name} is not among the failure's attachments"
        for text in ("RFC 7296 s2.3 MUST", "verdict: FAILED", "peer_version: 6.0.1", "kernel: 6.12.0-uml",
                     CATEGORIES["FAILED"]):
            assert text in shown, text
        assert _closed_network(b, failure) == []
        b.screenshot(failure, tmp_path / "failure.png")

        m = b.open((scratch_run / "matrix.html").as_uri())
        text = m.wait_for("document.body && document.body.innerText")
        for verdict, n in totals.items():
            assert f"{verdict}: {n}" in text
        link = m.evaluate("document.querySelector('td.v-failed a').href")
        detail = b.open(link)
        shown = detail.wait_for("document.body && document.body.innerText")
        assert "FAILED" in shown and "RFC 7296 s2.3 MUST" in shown and "NO_PROPOSAL_CHOSEN" in shown
        hrefs = detail.evaluate("Array.from(document.querySelectorAll('li a')).map(a => a.href)")
        assert {Path(h).name for h in hrefs} >= {"capture.pcap", "capture.decrypted.pcap", "keys.json", "strongswan-6.0.log"}
        assert all(Path(h.removeprefix("file://")).exists() for h in hrefs), hrefs
        assert _closed_network(b, m) == [] and _closed_network(b, detail) == []


@pytest.mark.browser
@needs_allure
@needs_chromium
def test_without_the_switch_allure_adds_analytics_and_both_checks_see_it(scratch_run: Path, tmp_path: Path) -> None:
    env = {k: val for k, val in os.environ.items() if k != "ALLURE_NO_ANALYTICS"}
    subprocess.run([str(ALLURE), "generate", "--single-file", "-o", str(tmp_path / "r"), str(scratch_run / html.RESULTS)],
                   env=env, check=True, capture_output=True, timeout=300)
    found = outside_references((tmp_path / "r" / "index.html").read_text())
    assert any("googletagmanager.com" in u for u in found), found
    with Browser() as b:
        page = b.open((tmp_path / "r" / "index.html").as_uri())
        page.wait_for("document.body.innerText.includes('test cases')")
        left = _closed_network(b, page)
    assert any("googletagmanager.com" in u for u in left), left


def test_allure_results_carry_the_checks_as_steps(scratch_run: Path) -> None:
    results = {r["name"]: r for p in (scratch_run / "allure-results").glob("*-result.json")
               for r in [json.loads(p.read_text())]}

    def steps_of(name: str) -> list[tuple[str, str]]:
        return [(s["name"], s["status"]) for s in results[name].get("steps", [])]

    assert steps_of(FAILURE) == [("check RFC 7296 s2.3 MUST: IKE_AUTH answered with NO_PROPOSAL_CHOSEN", "failed")]
    assert steps_of("test_lab[strongswan-6.0]") == [("lab: veth vanished", "broken")]
    assert steps_of("test_cookie[libreswan-5.2]") == [
        ("check RFC 7296 s2.6 SHOULD: not met: no COOKIE asked under load", "failed")]
    assert steps_of("test_cookie[strongswan-6.0]") == [("check RFC 7296 s2.6 SHOULD: met", "passed")]
    step = results[FAILURE]["steps"][0]
    assert results[FAILURE]["start"] <= step["start"] <= step["stop"] <= results[FAILURE]["stop"]
