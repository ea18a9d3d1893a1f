"""Sharding (--shard K/N), joining the shards (report merge) and comparing two runs (report --diff) on a scratch suite."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import ConfigError
from harness.report import matrix, regression
from harness.report import verdict as v
from harness.report.merge import merge, merge_records
from harness.shard import assign, parse_shard
from harness.tests.report.test_matrix import SUITE

pytest_plugins = ["pytester"]

CONFTEST = ('pytest_plugins = ["harness.report.collector", "harness.shard"]\n'
            'def pytest_configure(config):\n'
            '    config.addinivalue_line("markers", "rfc(number, section, level): requirement")\n')


def run(pytester: pytest.Pytester, out: Path, *args: str, suite: str = SUITE) -> Path:
    """The scratch suite run into out (results.json, JUnit, Allure results), in a child process."""
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_suite=suite)
    pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--results-json={out / 'results.json'}",
                                  f"--junitxml={out / 'junit-interop.xml'}", f"--alluredir={out / 'allure-results'}", *args)
    assert (out / "results.json").exists(), f"the scratch run wrote no results into {out}"
    return out


def verdicts(folder: Path) -> dict[str, str]:
    return {r["nodeid"]: r["verdict"] for r in matrix.load_results(folder / "results.json")}


def test_assign_is_deterministic_balanced_and_total() -> None:
    ids = [f"t{i}" for i in range(10)]
    weights = {f"t{i}": float(i) for i in range(10)}  # 45 s in all
    shards = assign(ids, 3, weights)
    assert shards == assign(list(ids), 3, weights)
    loads = [sum(weights[n] for n, k in zip(ids, shards) if k == s) for s in range(3)]
    assert sum(loads) == 45.0 and max(loads) - min(loads) <= max(weights.values())  # LPT: within one test
    assert assign(ids, 1) == [0] * 10
    assert sorted(assign(ids, 4)) == [0, 0, 0, 1, 1, 1, 2, 2, 3, 3]  # no durations: counts as even as can be


@pytest.mark.parametrize("text", ["0/2", "3/2", "2", "a/b", "1/0"])
def test_a_bad_shard_names_the_option(text: str) -> None:
    with pytest.raises(ConfigError, match="--shard"):
        parse_shard(text)


def test_two_shards_merged_give_the_unsplit_matrix(pytester: pytest.Pytester, tmp_path: Path, capsys) -> None:
    whole = run(pytester, tmp_path / "whole")
    parts = [run(pytester, tmp_path / f"shard{k}", f"--shard={k}/2",
                 f"--shard-durations={whole / 'results.json'}") for k in (1, 2)]
    one, two = verdicts(parts[0]), verdicts(parts[1])
    assert one and two and not one.keys() & two.keys()
    assert main(["report", "merge", *map(str, parts), "--out", str(tmp_path / "merged")]) == 0
    merged = tmp_path / "merged"
    assert verdicts(merged) == verdicts(whole)
    assert json.loads((merged / "matrix.json").read_text())["rows"] == json.loads(
        (matrix.write(matrix.build(matrix.load_results(whole / "results.json")), whole).parent / "matrix.json").read_text())["rows"]
    junit = (merged / "junit-interop.xml").read_text()
    assert junit.count("<testcase ") == len(verdicts(whole))
    allure = merged / "allure-results"
    assert len(list(allure.glob("*-result.json"))) == len(verdicts(whole))
    assert (allure / "categories.json").exists() and (allure / "environment.properties").exists()
    printed = capsys.readouterr().out.splitlines()
    assert f"junit: {(merged / 'junit-interop.xml').resolve()}" in printed
    said = [ln for ln in printed if ln.startswith("allure report: ")]
    page = merged / "allure-report" / "index.html"  # written where Allure 2 is installed, else the line says why not
    assert len(said) == 1, said
    assert (str(page.resolve()) in said[0]) if page.exists() else said[0].startswith("allure report: not written: ")


def test_merge_refuses_overlapping_folders(tmp_path: Path) -> None:
    rec = {"nodeid": "t::a", "verdict": v.OK}
    with pytest.raises(ConfigError, match="is in both"):
        merge_records({tmp_path / "a": [rec], tmp_path / "b": [rec]})
    with pytest.raises(ConfigError, match="not a folder"):
        merge([tmp_path / "missing"], tmp_path / "out")
    with pytest.raises(ConfigError, match="one of the inputs"):
        merge([tmp_path], tmp_path)


def test_diff_finds_a_planted_regression(pytester: pytest.Pytester, tmp_path: Path, capsys) -> None:
    old = run(pytester, tmp_path / "old")
    planted = SUITE.replace('def test_stack_only():\n    pass', 'def test_stack_only():\n    assert False, "planted"')
    new = run(pytester, tmp_path / "new", suite=planted)
    r = regression.compare(matrix.load_results(old / "results.json"), matrix.load_results(new / "results.json"))
    assert [(c.case, c.old, c.new) for c in r.newly_failing] == [("test_stack_only", v.OK, v.FAILED)]
    assert r.regressed and not r.newly_passing and not r.changed and r.unchanged == len(verdicts(old)) - 1
    capsys.readouterr()
    assert main(["report", "--diff", str(old), str(new)]) == 1
    printed = capsys.readouterr().out
    assert printed.startswith("REGRESSION: 1 newly failing") and "test_stack_only: OK -> FAILED" in printed
    assert "| built-in | test_stack_only | OK -> FAILED |" in (new / "regression.md").read_text()
    assert "test_stack_only" in (new / "regression.html").read_text()
    assert main(["report", "--diff", str(new), str(old)]) == 0  # the other way round it is a fix
    assert "1 newly passing" in capsys.readouterr().out


def test_diff_names_a_missing_results_file(tmp_path: Path, capsys) -> None:
    assert main(["report", "--diff", str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    assert "no results file" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["github-actions.yml", "gitlab-ci.yml"])
def test_the_ci_examples_call_commands_that_parse(name: str) -> None:
    """Each `run.sh interop ...` and `run.sh report ...` line of the shipped CI examples parses as given."""
    from harness.cli import build_parser

    text = re.sub(r"\$\{\{[^}]*\}\}|\$\{\w+\}", "1", (Path(__file__).resolve().parents[2] / "ci" / name).read_text())
    commands = {"interop": "run", "report": "report"}
    calls = [[commands[m.group(1)], *m.group(2).split()] for m in re.finditer(r"run\.sh (interop|report)(.*)", text)]
    assert [c[0] for c in calls] == ["run", "report"]
    for argv in calls:
        args = build_parser().parse_args(argv)
        assert args.command in ("run", "report")
        if args.command == "run":
            parse_shard(args.shard)


def test_progress_prints_counts_failures_and_an_eta(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST.replace('"harness.shard"]', '"harness.shard", "harness.report.live"]'))
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--progress", "-s")
    lines = [line for line in result.outlines if line.startswith("[progress]")]
    assert any(line.startswith("[progress] FAILED ") and "test_replay[libreswan-4.10-64]" in line for line in lines)
    assert lines[-1].startswith("[progress] 9/9 tests, 2 failed so far,") and "ETA 0s" in lines[-1]


def test_eta_reads_the_pace_so_far() -> None:
    from harness.report.live import eta

    assert (eta(0, 10, 5.0), eta(5, 10, 50.0), eta(1, 100, 10.0), eta(10, 10, 1.0)) == ("?", "50s", "16m30s", "0s")
