"""pytest plugin that records one result per test for the interop matrix (works under xdist).

A test (or the lab fixture) names what it ran against through ``record_property`` /
``item.user_properties``: ``peer``, ``peer_version``, ``runtime``, ``kernel`` and
``artifact`` (a file under the report dir: capture, decrypted capture, keys, peer log).
Requirement markers ``rfc(number, section, level)`` are copied into the results.
Enable with ``--results-json PATH``.
"""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest

from harness.report import verdict as v


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("ipsec-interop").addoption(
        "--results-json", metavar="PATH", default=None,
        help="write one JSON record per test (verdict, peer, RFC requirements) for the interop matrix")


def requirements(item: pytest.Item) -> list[dict]:
    """The rfc(number, section, level) markers of a test, outermost last."""
    out = []
    for m in item.iter_markers("rfc"):
        number, section, level = (list(m.args) + [None, None, None])[:3]
        out.append({"rfc": number, "section": str(section or ""), "level": level or m.kwargs.get("level", "")})
    return out


def case_name(item: pytest.Item, peer: str | None) -> str:
    """The test's id with the peer's part of the parameter id removed (one row of the matrix)."""
    name = item.nodeid.split("::", 1)[-1]
    if peer and "[" in name:
        base, params = name.split("[", 1)
        params = params[:-1].replace(peer, "", 1).replace("--", "-").strip("-")
        name = f"{base}[{params}]" if params else base
    return name


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    reqs = requirements(item)
    if reqs:
        item.user_properties.append(("requirements", reqs))
    parts = Path(item.nodeid.split("::", 1)[0]).parts
    item.user_properties.append(("area", parts[1] if len(parts) > 2 and parts[0] == "suites" else parts[0]))
    params = getattr(getattr(item, "callspec", None), "params", {})
    if isinstance(params.get("peer"), str):
        item.user_properties.append(("peer", params["peer"]))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    report.ipsi_assertion = bool(call.excinfo and call.excinfo.errisinstance(AssertionError))
    peer = dict(item.user_properties).get("peer")
    report.ipsi_case = case_name(item, peer if isinstance(peer, str) else None)


class Recorder:
    """Folds the phase reports of each test into one record; writes them at session end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: dict[str, dict] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props: dict = {}
        for k, val in report.user_properties:
            if k == "artifact":
                props.setdefault("artifacts", []).append(val)
            else:
                props[k] = val
        rec = self.records.setdefault(report.nodeid, {"nodeid": report.nodeid, "verdict": None, "duration": 0.0,
                                                      "message": "", "artifacts": []})
        skip_reason = ""
        if report.skipped and isinstance(report.longrepr, tuple):
            skip_reason = str(report.longrepr[2]).removeprefix("Skipped: ")
        xfail = hasattr(report, "wasxfail")
        phase = v.from_outcome(report.outcome, report.when, getattr(report, "ipsi_assertion", False), skip_reason, xfail)
        if phase != v.OK and v.worst(rec["verdict"], phase) == phase and rec["verdict"] != phase:
            rec["message"] = skip_reason or (report.longreprtext or "").strip()[-4000:]
            rec["phase"] = report.when
        rec["verdict"] = v.worst(rec["verdict"], phase)
        rec["duration"] += report.duration
        rec["case"] = getattr(report, "ipsi_case", report.nodeid.split("::", 1)[-1])
        for k, val in props.items():
            if k == "artifacts":
                rec["artifacts"] = sorted(set(rec["artifacts"]) | set(val))
            else:
                rec[k] = val

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(list(self.records.values()), indent=1, default=str))
        alluredir = session.config.getoption("allure_report_dir", None)
        if alluredir:
            write_allure_metadata(Path(alluredir), self.records.values())


def write_allure_metadata(alluredir: Path, records) -> None:
    """environment.properties (peer versions, runtimes, kernels) and categories.json for Allure."""
    alluredir.mkdir(parents=True, exist_ok=True)
    env: dict[str, str] = {}
    for r in records:
        if r.get("peer"):
            for k in ("peer_version", "runtime", "kernel"):
                if r.get(k):
                    env[f"{r['peer']}.{k}"] = str(r[k])
    (alluredir / "environment.properties").write_text("".join(f"{k}={val}\n" for k, val in sorted(env.items())))
    categories = resources.files("harness.report").joinpath("allure_categories.json").read_text()
    (alluredir / "categories.json").write_text(categories)


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("--results-json", None)
    if path and not hasattr(config, "workerinput"):  # the xdist controller (or a plain run) records
        config.pluginmanager.register(Recorder(Path(path)), "ipsi-recorder")
