"""pytest plugin that records one result per test for the interop matrix (works under xdist).

A test (or the lab fixture) names what it ran against through ``record_property`` /
``item.user_properties``: ``peer``, ``peer_version``, ``runtime``, ``kernel`` and
``artifact`` (a file under the report dir: capture, decrypted capture, keys, peer log).
Requirement markers ``rfc(number, section, level)`` are copied into the results.
Enable with ``--results-json PATH``.

Every phase report is graded (harness.report.verdict has the table): Unimplemented and CannotReconfigure
become skips here, so the terminal and Allure show a skip with the reason; harness.report.checks.should
records SHOULDs not met (NON-STRICT); tests covered by a documented difference (harness.report.differences,
matched on case_name and item_peers) are marked xfail at collection and graded DOCUMENTED when they fail.
"""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest

from harness.errors import CannotReconfigure, LabError, PeerFault, Unimplemented
from harness.report import allure_meta, differences, steps
from harness.report import verdict as v
from harness.report.checks import NON_STRICT_KEY


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("ipsec-interop").addoption(
        "--results-json", metavar="PATH", default=None,
        help="write one JSON record per test (verdict, peer, RFC requirements) for the interop matrix")
    parser.getgroup("ipsec-interop").addoption(
        "--differences", metavar="DIR", default=None,
        help="documented differences (<implementation>.json lists; default: suites/differences under the rootdir)")


def requirements(item: pytest.Item) -> list[dict]:
    """The rfc(number, section, level) markers of a test, outermost last."""
    out = []
    for m in item.iter_markers("rfc"):
        number, section, level = (list(m.args) + [None, None, None])[:3]
        out.append({"rfc": number, "section": str(section or ""), "level": level or m.kwargs.get("level", "")})
    return out


def case_name(item: pytest.Item, peer: str | None) -> str:
    """The test's id with the peer's part of the parameter id removed (one row of the matrix); a pair case's
    pair id (initiator>responder) becomes its role (builtin>peer, strongswan>libreswan, ...)."""
    name = item.nodeid.split("::", 1)[-1]
    pair = getattr(getattr(item, "callspec", None), "params", {}).get("pair")
    if hasattr(pair, "role") and hasattr(pair, "id"):
        return name.replace(pair.id, pair.role)
    if peer and "[" in name:
        base, params = name.split("[", 1)
        params = params[:-1].replace(peer, "", 1).replace("--", "-").strip("-")
        name = f"{base}[{params}]" if params else base
    return name


def _pair_ends(pair: object) -> list[str]:
    """The peer names of a "pair" parameter: its `peers` (a harness.cases PairSpec), else its str form "a+b"."""
    if hasattr(pair, "peers"):
        return list(pair.peers)
    return [e for e in str(getattr(pair, "id", None) or pair).split("+") if e]


def _id_peer(item: pytest.Item) -> str | None:
    """The part of the parameter id that names the peer(s): the "peer" param, else the "pair" param's "a+b"."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    if isinstance(params.get("peer"), str):
        return params["peer"]
    if params.get("pair") is not None:
        return "+".join(_pair_ends(params["pair"]))
    return None


def item_peers(item: pytest.Item) -> list[str]:
    """The peers a test runs against: user property "ends", else the "peer" or "pair" param."""
    ends = dict(item.user_properties).get("ends")
    if ends:
        return [ends] if isinstance(ends, str) else [str(e) for e in ends]
    named = _id_peer(item)
    return named.split("+") if named else []


def differences_dir(config: pytest.Config) -> Path:
    """Where the documented differences live: --differences, else suites/differences under the rootdir."""
    return Path(config.getoption("--differences", None) or config.rootpath / "suites" / "differences")


def _document(item: pytest.Item, d: differences.Difference) -> None:
    """Expect the test to fail by the documented difference d (strict: a pass says the difference is stale)."""
    prefix = v.INTERMITTENT_PREFIX if d.intermittent else v.DOCUMENTED_PREFIX
    item.stash[_DIFFERENCE] = d
    item.add_marker(pytest.mark.xfail(strict=not d.intermittent, raises=AssertionError, reason=f"{prefix} {d.id}: {d.reason}"))
    item.user_properties.append(("difference", d.as_record()))


_VERSIONED = pytest.StashKey[list]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    known = differences.load_all(differences_dir(config).resolve())
    if not known:
        return
    for item in items:
        found = differences.matching(known, case_name(item, _id_peer(item)), item_peers(item))
        plain = [d for d in found if not d.versions]
        if plain:
            _document(item, plain[0])
        elif found:
            item.stash[_VERSIONED] = found  # the peer reports its version only once its fixtures ran


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


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    versions = [str(val) for k, val in item.user_properties if k == "peer_version" or k.endswith(".peer_version")]
    for d in item.stash.get(_VERSIONED, []):
        if any(d.covers_version(ver) for ver in versions):
            _document(item, d)  # pytest's skipping plugin reads xfail marks added during the call
            return


def classify(exc: BaseException | None) -> str:
    """What a phase raised: PEER (a PeerFault), ASSERTION (another AssertionError, pytest.fail), ERROR, NONE."""
    if exc is None:
        return v.NONE
    if isinstance(exc, PeerFault):
        return v.PEER
    return v.ASSERTION if isinstance(exc, (AssertionError, pytest.fail.Exception)) else v.ERROR


def _as_skip(item: pytest.Item, report: pytest.TestReport, reason: str) -> None:
    """Turn a failed phase report into a skip with reason (what the terminal and Allure then show)."""
    path, line = item.location[0], (item.location[1] or 0) + 1
    report.outcome, report.longrepr = "skipped", (path, line, f"Skipped: {reason}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    exc = call.excinfo.value if call.excinfo is not None else None
    if report.failed and isinstance(exc, Unimplemented):
        _as_skip(item, report, f"{v.UNIMPLEMENTED_PREFIX} {exc}")  # the peer lacks what the case needs
    elif report.failed and isinstance(exc, CannotReconfigure):
        _as_skip(item, report, str(exc))  # an external device cannot be reconfigured: a skip naming the profile
    d = item.stash.get(_DIFFERENCE, None)
    if report.when == "teardown" and report.failed and isinstance(exc, PeerFault) and d is not None and d.intermittent:
        # the wire check runs at teardown, where pytest applies no xfail: the intermittent deviation seen there
        report.outcome, report.wasxfail = "skipped", f"{v.INTERMITTENT_PREFIX} {d.id}: {d.reason}"  # type: ignore[attr-defined]
    report.ipsi_cause = classify(exc)
    if isinstance(exc, PeerFault):
        report.ipsi_fault = {"message": str(exc), "requirement": exc.requirement, "notify": exc.notify}
    if report.when != "teardown" and isinstance(exc, (PeerFault, LabError)) and not isinstance(exc, CannotReconfigure):
        # a fault at teardown is the wire check's, which records its own step
        steps.record(item, [fault_step(exc, call.stop)])
    peer = dict(item.user_properties).get("peer")
    report.ipsi_case = case_name(item, peer if isinstance(peer, str) else None)
    if report.when == "call" and (report.longreprtext or "").startswith(v.STRICT_XPASS_PREFIX):
        item.stash[_ALLURE_NOTE] = report.longreprtext
    item.stash[_VERDICT] = v.worst(item.stash.get(_VERDICT, None), phase_verdict(report))
    if report.when == "teardown":
        notes = [val for k, val in item.user_properties if k == NON_STRICT_KEY]
        note = item.stash.get(_ALLURE_NOTE, "") or ("non-strict: " + "; ".join(notes) if notes else "")
        if note:
            _allure_note(item, note)
        verdict = item.stash[_VERDICT]
        _allure_enrich(item, v.NON_STRICT if verdict == v.OK and notes else verdict)


def fault_step(exc: PeerFault | LabError, at: float) -> steps.Step:
    """The check that raised (at: the phase's end, in s since the epoch) as a step: a PeerFault failed, its
    requirement named; a LabError broken."""
    first, ms = (str(exc).splitlines() or [""])[0][:300], int(at * 1000)
    if isinstance(exc, PeerFault):
        return steps.check_step(f"check {first}" if exc.requirement else f"check: {first}", False, ms, ms)
    return steps.check_step(f"lab: {first}", False, ms, ms, status=steps.BROKEN)


_ALLURE_NOTE = pytest.StashKey[str]()
_VERDICT = pytest.StashKey[str]()
_DIFFERENCE = pytest.StashKey[differences.Difference]()


def phase_verdict(report: pytest.TestReport) -> str:
    """The verdict of one phase report (harness.report.verdict.from_outcome on what the report says)."""
    return v.from_outcome(report.outcome, report.when, getattr(report, "ipsi_cause", v.NONE), _skip_reason(report),
                          getattr(report, "wasxfail", None), report.longreprtext or "")


def _skip_reason(report: pytest.TestReport) -> str:
    """A skipped report's reason without pytest's "Skipped: " prefix; '' for other reports."""
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    return ""


def _allure_enrich(item: pytest.Item, verdict: str) -> None:
    """The requirement labels, the ends' parameters, the verdict tag and the recorded steps (harness.report.steps)
    on the test's Allure result (harness.report.allure_meta), when allure-pytest is active."""
    listener = item.config.pluginmanager.getplugin("allure_listener")
    result = listener.allure_logger.get_test(None) if listener is not None else None
    if result is not None:
        allure_meta.enrich(result, requirements(item), item.user_properties, verdict, steps.recorded(item))


def _allure_note(item: pytest.Item, message: str) -> None:
    """Give the current Allure result a status message where it has none (a strict XPASS, a NON-STRICT pass).

    Allure records no message for those, so categories.json could not tell them apart; called at teardown,
    after allure-pytest graded the call phase.
    """
    listener = item.config.pluginmanager.getplugin("allure_listener")
    if listener is None:
        return
    from allure_commons.model2 import StatusDetails  # noqa: PLC0415 - only with allure-pytest active

    result = listener.allure_logger.get_test(None)  # the test being reported: earlier ones are closed
    if result is not None and not result.statusDetails:
        result.statusDetails = StatusDetails(message=message)


class Recorder:
    """Folds the phase reports of each test into one record; writes them at session end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: dict[str, dict] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props: dict = {}
        lists: dict[str, list] = {"artifacts": [], NON_STRICT_KEY: []}
        for k, val in report.user_properties:
            if k == "artifact":
                lists["artifacts"].append(val)
            elif k == NON_STRICT_KEY:
                lists[k].append(val)
            else:
                props[k] = val
        rec = self.records.setdefault(report.nodeid, {"nodeid": report.nodeid, "verdict": None, "duration": 0.0,
                                                      "message": "", "artifacts": []})
        skip_reason = _skip_reason(report)
        xfail_reason = getattr(report, "wasxfail", None)
        phase = phase_verdict(report)
        if phase != v.OK and v.worst(rec["verdict"], phase) == phase and rec["verdict"] != phase:
            rec["message"] = _message(report, phase, skip_reason, xfail_reason)
            rec["phase"] = report.when
            fault = getattr(report, "ipsi_fault", None) if phase == v.FAILED else None
            for k in ("requirement", "notify"):
                if fault and fault.get(k):
                    rec[k] = fault[k]
                else:
                    rec.pop(k, None)
        rec["verdict"] = v.worst(rec["verdict"], phase)
        rec["duration"] += report.duration
        rec["case"] = getattr(report, "ipsi_case", report.nodeid.split("::", 1)[-1])
        rec.update(props)
        rec["artifacts"] = sorted(set(rec["artifacts"]) | set(lists["artifacts"]))
        if lists[NON_STRICT_KEY]:
            rec[NON_STRICT_KEY] = list(dict.fromkeys(rec.get(NON_STRICT_KEY, []) + lists[NON_STRICT_KEY]))
        if report.when == "teardown" and rec["verdict"] == v.OK and rec.get(NON_STRICT_KEY):
            rec["verdict"], rec["message"] = v.NON_STRICT, "\n".join(rec[NON_STRICT_KEY])

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(list(self.records.values()), indent=1, default=str))
        alluredir = session.config.getoption("allure_report_dir", None)
        if alluredir:
            write_allure_metadata(Path(alluredir), self.records.values())


def _message(report: pytest.TestReport, verdict: str, skip_reason: str, xfail_reason: str | None) -> str:
    """What a record says about its worst phase: the PeerFault's message, the skip or xfail reason, else the failure."""
    text = (report.longreprtext or "").strip()[-4000:]
    fault = getattr(report, "ipsi_fault", None)
    if verdict == v.FAILED and fault:
        return fault["message"]
    if verdict in (v.DOCUMENTED, v.XFAIL) and xfail_reason is not None:
        return f"{xfail_reason}\n{text}".strip()
    if verdict == v.XPASS and xfail_reason is not None:
        return f"XPASS: {xfail_reason}"  # a non-strict xpass (a strict one is a failure report saying so)
    return skip_reason or text


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
