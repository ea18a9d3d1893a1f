"""The collector folds pytest results into verdicts; the matrix arranges them by case and peer."""
from __future__ import annotations

import json

import pytest

from harness.errors import ConfigError
from harness.report import matrix
from harness.report import verdict as v

pytest_plugins = ["pytester"]

SUITE = """
import pytest

@pytest.fixture(params=["strongswan-5.9", "libreswan-4.10"])
def peer(request, record_property):
    record_property("peer_version", "v-" + request.param)
    record_property("runtime", "uml")
    record_property("artifact", "captures/x.pcap")
    return request.param

@pytest.mark.rfc(4303, "3.4.3", "MUST")
@pytest.mark.parametrize("window", [32, 64])
def test_replay(peer, window):
    assert not (peer.startswith("libreswan") and window == 64), "replayed packet accepted"

def test_lab_fault(peer):
    if peer.startswith("strongswan"):
        raise OSError("veth vanished")

def test_unimplemented(peer):
    pytest.skip("unimplemented: no AH-GMAC" if peer.startswith("libreswan") else "no image")

def test_stack_only():
    pass
"""


def run_suite(pytester: pytest.Pytester) -> list[dict]:
    pytester.makeconftest('pytest_plugins = ["harness.report.collector"]\n'
                          'def pytest_configure(config):\n'
                          '    config.addinivalue_line("markers", "rfc(number, section, level): requirement")\n')
    pytester.makepyfile(test_suite=SUITE)
    out = pytester.path / "results.json"
    pytester.runpytest("-p", "no:cacheprovider", f"--results-json={out}")
    return json.loads(out.read_text())


def test_collector_grades_every_phase(pytester: pytest.Pytester) -> None:
    recs = {r["nodeid"].split("::")[1]: r for r in run_suite(pytester)}
    assert recs["test_replay[strongswan-5.9-32]"]["verdict"] == v.OK
    assert recs["test_replay[libreswan-4.10-64]"]["verdict"] == v.FAILED
    assert "replayed packet accepted" in recs["test_replay[libreswan-4.10-64]"]["message"]
    assert recs["test_lab_fault[strongswan-5.9]"]["verdict"] == v.BROKEN
    assert recs["test_unimplemented[libreswan-4.10]"]["verdict"] == v.UNIMPLEMENTED
    assert recs["test_unimplemented[strongswan-5.9]"]["verdict"] == v.SKIPPED
    r = recs["test_replay[libreswan-4.10-32]"]
    assert r["case"] == "test_replay[32]" and r["peer"] == "libreswan-4.10" and r["runtime"] == "uml"
    assert r["requirements"] == [{"rfc": 4303, "section": "3.4.3", "level": "MUST"}]
    assert r["artifacts"] == ["captures/x.pcap"]


def test_matrix_rows_cases_columns_peers(pytester: pytest.Pytester, tmp_path) -> None:
    m = matrix.build(run_suite(pytester))
    assert m.peers == ["libreswan-4.10", "strongswan-5.9", matrix.NO_PEER]
    (cases,) = m.rows.values()
    assert cases["test_replay[64]"]["libreswan-4.10"]["verdict"] == v.FAILED
    assert cases["test_replay[64]"]["strongswan-5.9"]["verdict"] == v.OK
    assert set(cases["test_stack_only"]) == {matrix.NO_PEER}
    assert m.by_requirement["RFC 4303 s3.4.3 MUST"] == {v.OK: 3, v.FAILED: 1}
    assert m.coverage["RFC 4303 s3.4.3 MUST"] == {"strongswan-5.9": {v.OK: 2}, "libreswan-4.10": {v.OK: 1, v.FAILED: 1}}
    assert matrix.coverage_cell(m.coverage["RFC 4303 s3.4.3 MUST"]["libreswan-4.10"]) == ("1/2 FAILED", "v-failed")
    assert matrix.coverage_cell({v.OK: 2, v.DOCUMENTED: 1, v.UNIMPLEMENTED: 4}) == ("3/3 DOCUMENTED", "v-documented")
    assert matrix.coverage_cell({v.SKIPPED: 1}) == ("n/a", "v-skipped")
    page = matrix.write(m, tmp_path)
    text = page.read_text()
    assert "FAILED" in text and "v-libreswan-4.10" in text
    assert "<td>RFC 4303 s3.4.3 MUST</td><td class=v-failed>1/2 FAILED</td><td class=v-ok>2/2</td>" in text
    section = text.index("<th class=section colspan=4>RFC 4303 s3.4.3</th>")
    assert section < text.index("test_replay[32]") < text.index("<th class=section colspan=4>no RFC section named</th>") \
        < text.index("test_lab_fault"), "rows are grouped by RFC section, the rows naming none last"
    assert "| test_suite.py: test_replay[64] | RFC 4303 s3.4.3 | FAILED | OK | - |" in (tmp_path / "matrix.md").read_text()
    details = sorted(p.name for p in (tmp_path / "details").iterdir())
    assert len(details) == 9
    assert json.loads((tmp_path / "matrix.json").read_text())["totals"][v.FAILED] == 1


def test_a_peer_under_two_runtimes_names_both_and_each_cell_its_own() -> None:
    recs = [{"nodeid": "a", "case": "a", "peer": "p", "verdict": v.OK, "runtime": "uml", "kernel": "6.1"},
            {"nodeid": "b", "case": "b", "peer": "p", "verdict": v.OK, "runtime": "docker", "kernel": "6.18"},
            {"nodeid": "c", "case": "c", "peer": "p", "verdict": v.OK, "runtime": "uml", "kernel": "6.1"}]
    m = matrix.build(recs)
    assert m.peer_info["p"] == {"runtime": "uml, docker", "kernel": "6.1, 6.18"}
    assert "runtime docker" in matrix._detail_page("x", "b", "p", recs[1], m.peer_info["p"])


def test_worst_verdict_wins() -> None:
    assert v.worst(v.OK, v.BROKEN) == v.BROKEN
    assert v.worst(v.FAILED, v.SKIPPED) == v.FAILED
    assert v.worst(None, v.OK) == v.OK


def test_bad_results_file_is_a_config_error(tmp_path) -> None:
    bad = tmp_path / "r.json"
    bad.write_text("{}")
    with pytest.raises(ConfigError, match="r.json"):
        matrix.load_results(bad)
    with pytest.raises(ConfigError, match="no results file"):
        matrix.load_results(tmp_path / "missing.json")


def test_matrix_shows_non_strict_and_documented_and_lists_the_differences(tmp_path) -> None:
    diff = {"id": "ss-1", "reason": "no IDr/AUTH", "evidence": "charon log line", "requirement": "RFC 7296 s1.2 MUST"}
    recs = [{"nodeid": "a[p]", "case": "a", "peer": "p", "verdict": v.NON_STRICT, "message": "RFC 7296 s2.23 SHOULD: x",
             "non_strict": ["RFC 7296 s2.23 SHOULD: x"]},
            {"nodeid": "b[p]", "case": "b", "peer": "p", "verdict": v.DOCUMENTED, "difference": diff},
            {"nodeid": "c[p]", "case": "c", "peer": "p", "verdict": v.FAILED, "requirement": "RFC 7296 s1.3 MUST",
             "notify": "NO_PROPOSAL_CHOSEN"}]
    m = matrix.build(recs)
    assert m.differences == [{**diff, "case": "b", "peer": "p", "verdict": v.DOCUMENTED}]
    text = matrix.write(m, tmp_path).read_text()
    assert "class=v-non-strict" in text and "class=v-documented" in text
    assert "td.v-documented{background:" in text and "passed, but a SHOULD was not met" in text
    assert "<td>ss-1</td>" in text and "charon log line" in text
    assert json.loads((tmp_path / "matrix.json").read_text())["differences"][0]["id"] == "ss-1"
    assert "documented difference ss-1 (p, b): DOCUMENTED" in (tmp_path / "matrix.md").read_text()
    assert "SHOULDs not met" in matrix._detail_page("x", "a", "p", recs[0], {})
    assert "Documented difference ss-1" in matrix._detail_page("x", "b", "p", recs[1], {})
    assert "NO_PROPOSAL_CHOSEN" in matrix._detail_page("x", "c", "p", recs[2], {})
