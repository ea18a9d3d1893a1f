"""Each verdict pinned: small generated suites run in pytester with the collector, graded from the JSON records."""
from __future__ import annotations

import json

import pytest

from harness.errors import ConfigError
from harness.report import differences
from harness.report import verdict as v

pytest_plugins = ["pytester"]

SUITE = """
import pytest
from harness.errors import (CannotReconfigure, LabError, NoAnswer, Refused, Unimplemented, UnsupportedFeature,
                            UnsupportedProposal)
from harness.report.checks import should

@pytest.fixture
def refusing_setup():
    raise Refused("IKE_SA_INIT refused", requirement="RFC 7296 s2.7 MUST", notify="NO_PROPOSAL_CHOSEN")

@pytest.fixture
def asserting_setup():
    assert False, "fixture sanity check"

@pytest.fixture
def asserting_teardown():
    yield
    assert False, "peer left an SA behind"

@pytest.fixture
def silent_teardown():
    yield
    raise NoAnswer("no DELETE response", requirement="RFC 7296 s1.4.1 MUST")

@pytest.fixture
def unimplemented_setup():
    raise UnsupportedFeature("libreswan: setting 'ppk' cannot be expressed")

def test_ok():
    pass

def test_refused_in_call():
    raise Refused("CREATE_CHILD_SA refused", requirement="RFC 7296 s1.3 MUST", notify="NO_PROPOSAL_CHOSEN")

def test_no_answer_in_call():
    raise NoAnswer("no IKE_AUTH response in 30 s", requirement="RFC 7296 s2.1 MUST")

def test_refused_in_setup(refusing_setup):
    pass

def test_peer_fault_in_teardown(silent_teardown):
    pass

def test_assertion_in_call():
    assert 1 == 2, "replayed packet accepted"

def test_pytest_fail_in_call():
    pytest.fail("ICV did not verify")

def test_assertion_in_teardown(asserting_teardown):
    pass

def test_assertion_in_setup(asserting_setup):
    pass

def test_lab_error():
    raise LabError("veth vanished")

def test_unimplemented_in_call():
    raise Unimplemented("no AH-GMAC")

def test_unsupported_proposal():
    raise UnsupportedProposal("strongswan", "aes128-sha1", "sha1", "disabled in this build")

def test_unsupported_feature_in_setup(unimplemented_setup):
    pass

def test_unimplemented_skip():
    pytest.skip("unimplemented: no IKE fragmentation")

def test_plain_skip():
    pytest.skip("no image")

def test_cannot_reconfigure():
    raise CannotReconfigure("profile vendor.toml: the device cannot be reconfigured")

def test_non_strict(request):
    assert should(request, True, "RFC 7296 s2.4 SHOULD", "met")
    assert not should(request, False, "RFC 7296 s2.23 SHOULD", "no NAT keepalives")
    should(request.node, False, "RFC 4303 s3.4.3 SHOULD", "window below 64")

def test_non_strict_then_failed(request):
    should(request, False, "RFC 7296 s2.4 SHOULD", "late")
    assert False, "broken MUST"

@pytest.mark.xfail(reason="known", strict=True)
def test_xfail():
    assert False

@pytest.mark.xfail(reason="fixed upstream?", strict=True)
def test_strict_xpass():
    pass

@pytest.mark.xfail(reason="maybe", strict=False)
def test_loose_xpass():
    pass
"""

CONFTEST = 'pytest_plugins = ["harness.report.collector"]\n'


def run(pytester: pytest.Pytester, suite: str, *args: str) -> dict[str, dict]:
    """Run the generated suite with the collector; its records by test name."""
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_suite=suite)
    out = pytester.path / "results.json"
    pytester.runpytest("-p", "no:cacheprovider", f"--results-json={out}", *args)
    return {r["nodeid"].split("::", 1)[1]: r for r in json.loads(out.read_text())}


@pytest.fixture
def graded(pytester: pytest.Pytester) -> dict[str, dict]:
    return run(pytester, SUITE)


@pytest.mark.parametrize("test, verdict", [
    ("test_ok", v.OK),
    ("test_refused_in_call", v.FAILED),
    ("test_no_answer_in_call", v.FAILED),
    ("test_refused_in_setup", v.FAILED),
    ("test_peer_fault_in_teardown", v.FAILED),
    ("test_assertion_in_call", v.FAILED),
    ("test_pytest_fail_in_call", v.FAILED),
    ("test_assertion_in_teardown", v.FAILED),
    ("test_assertion_in_setup", v.BROKEN),
    ("test_lab_error", v.BROKEN),
    ("test_unimplemented_in_call", v.UNIMPLEMENTED),
    ("test_unsupported_proposal", v.UNIMPLEMENTED),
    ("test_unsupported_feature_in_setup", v.UNIMPLEMENTED),
    ("test_unimplemented_skip", v.UNIMPLEMENTED),
    ("test_plain_skip", v.SKIPPED),
    ("test_cannot_reconfigure", v.SKIPPED),
    ("test_non_strict", v.NON_STRICT),
    ("test_non_strict_then_failed", v.FAILED),
    ("test_xfail", v.XFAIL),
    ("test_strict_xpass", v.XPASS),
    ("test_loose_xpass", v.XPASS),
])
def test_mapping(graded: dict[str, dict], test: str, verdict: str) -> None:
    assert graded[test]["verdict"] == verdict, graded[test]


def test_a_peer_fault_is_its_message_with_requirement_and_notify(graded: dict[str, dict]) -> None:
    r = graded["test_refused_in_call"]
    assert r["message"] == "RFC 7296 s1.3 MUST: CREATE_CHILD_SA refused"
    assert (r["requirement"], r["notify"], r["phase"]) == ("RFC 7296 s1.3 MUST", "NO_PROPOSAL_CHOSEN", "call")
    r = graded["test_peer_fault_in_teardown"]
    assert r["message"] == "RFC 7296 s1.4.1 MUST: no DELETE response" and "notify" not in r and r["phase"] == "teardown"
    assert graded["test_refused_in_setup"]["notify"] == "NO_PROPOSAL_CHOSEN"
    assert "requirement" not in graded["test_assertion_in_call"]


def test_unimplemented_is_a_skip_with_the_reason(graded: dict[str, dict]) -> None:
    assert graded["test_unimplemented_in_call"]["message"] == "unimplemented: no AH-GMAC"
    assert graded["test_unsupported_proposal"]["message"].startswith(
        "unimplemented: strongswan: proposal 'aes128-sha1': keyword 'sha1'")
    assert graded["test_unsupported_feature_in_setup"]["phase"] == "setup"
    assert graded["test_cannot_reconfigure"]["message"] == "profile vendor.toml: the device cannot be reconfigured"


def test_terminal_shows_unimplemented_as_skips(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs", "-k", "unimplemented or unsupported or cannot")
    result.assert_outcomes(skipped=5)
    result.stdout.fnmatch_lines(["*unimplemented: no AH-GMAC*"])


def test_non_strict_lists_every_should_not_met(graded: dict[str, dict]) -> None:
    r = graded["test_non_strict"]
    assert r["message"] == "RFC 7296 s2.23 SHOULD: no NAT keepalives\nRFC 4303 s3.4.3 SHOULD: window below 64"
    assert r["non_strict"] == ["RFC 7296 s2.23 SHOULD: no NAT keepalives", "RFC 4303 s3.4.3 SHOULD: window below 64"]
    assert graded["test_non_strict_then_failed"]["message"].count("broken MUST") >= 1


def test_xpass_messages(graded: dict[str, dict]) -> None:
    assert graded["test_strict_xpass"]["message"] == "[XPASS(strict)] fixed upstream?"
    assert graded["test_loose_xpass"]["message"] == "XPASS: maybe"


def test_order_worst_first() -> None:
    assert v.ORDER == (v.BROKEN, v.FAILED, v.XPASS, v.NON_STRICT, v.UNIMPLEMENTED, v.DOCUMENTED, v.XFAIL,
                       v.SKIPPED, v.OK)
    assert v.worst(v.NON_STRICT, v.UNIMPLEMENTED) == v.NON_STRICT
    assert v.worst(v.XFAIL, v.DOCUMENTED) == v.DOCUMENTED


DIFF_SUITE = """
import pytest
from harness.errors import LabError, Refused

class Pair:
    def __init__(self, a, b):
        self.id = f"{a}+{b}"

@pytest.fixture
def peer_version(peer, record_property):
    record_property("peer_version", {"strongswan-6.0": "6.0.1"}.get(peer, "6.1.0"))

@pytest.mark.parametrize("peer", ["strongswan-6.0", "strongswan-5.9"])
def test_ike_auth(peer):
    raise Refused("IKE_AUTH answered with N(NO_PROPOSAL_CHOSEN) alone", requirement="RFC 7296 s1.2 MUST")

@pytest.mark.parametrize("peer", ["strongswan-6.0"])
def test_ike_auth_fixed(peer):
    pass

@pytest.mark.parametrize("peer", ["strongswan-6.0"])
def test_ike_auth_lab_fault(peer):
    raise LabError("container died")

@pytest.mark.parametrize("peer", ["strongswan-6.0"])
def test_ike_auth_unrelated(peer):
    raise ValueError("harness bug")

@pytest.mark.parametrize("pair", [Pair("builtin", "libreswan-5.2"), Pair("builtin", "libreswan-4.10")], ids=lambda p: p.id)
def test_rekey(pair):
    assert False, "INVALID_KE_PAYLOAD expected"

@pytest.mark.parametrize("peer", ["strongswan-6.0", "strongswan-6.1"])
def test_versioned(peer, peer_version):
    assert False, "old behaviour"

@pytest.mark.parametrize("peer", ["strongswan-6.0"])
def test_racy_passes(peer):
    pass

@pytest.mark.parametrize("peer", ["strongswan-6.0"])
def test_racy_fails(peer):
    raise Refused("a reply in clear", requirement="RFC 4301 s5 MUST")

@pytest.fixture
def wire_check():
    yield
    raise Refused("wire check: a reply in clear", requirement="RFC 4301 s5 MUST")

@pytest.mark.parametrize("peer", ["strongswan-6.0"])
def test_racy_wire(peer, wire_check):
    pass
"""

STRONGSWAN = [
    {"id": "ss-ike-auth", "case": "test_ike_auth*", "peers": ["strongswan-6.0*"], "verdict_expected": "FAILED",
     "reason": "answers IKE_AUTH with N(NO_PROPOSAL_CHOSEN) alone", "evidence": "charon log: failed to establish CHILD_SA",
     "requirement": "RFC 7296 s1.2 MUST"},
    {"id": "ss-versioned", "case": "test_versioned", "peers": ["strongswan-6.*"], "versions": ["6.0.*"],
     "verdict_expected": "FAILED", "reason": "only 6.0.x", "evidence": "x", "requirement": "RFC 7296 s2.1 MUST"},
    {"id": "ss-racy", "case": "test_racy_*", "peers": ["strongswan-6.0*"], "verdict_expected": "FAILED",
     "reason": "a reply in clear in some runs", "evidence": "a capture", "requirement": "RFC 4301 s5 MUST", "intermittent": True},
]
LIBRESWAN = [
    {"id": "ls-rekey", "case": "test_rekey", "peers": ["libreswan-5.*"], "verdict_expected": "FAILED",
     "reason": "NO_PROPOSAL_CHOSEN for another KE group", "evidence": "strongswan#3024", "requirement": "RFC 7296 s1.3 MUST"},
]


@pytest.fixture
def documented(pytester: pytest.Pytester) -> dict[str, dict]:
    d = pytester.mkdir("suites").joinpath("differences")
    d.mkdir()
    (d / "strongswan.json").write_text(json.dumps(STRONGSWAN))
    (d / "libreswan.json").write_text(json.dumps(LIBRESWAN))
    return run(pytester, DIFF_SUITE)


@pytest.mark.parametrize("test, verdict", [
    ("test_ike_auth[strongswan-6.0]", v.DOCUMENTED),
    ("test_ike_auth[strongswan-5.9]", v.FAILED),
    ("test_ike_auth_fixed[strongswan-6.0]", v.XPASS),
    ("test_ike_auth_lab_fault[strongswan-6.0]", v.BROKEN),
    ("test_ike_auth_unrelated[strongswan-6.0]", v.BROKEN),
    ("test_rekey[builtin+libreswan-5.2]", v.DOCUMENTED),
    ("test_rekey[builtin+libreswan-4.10]", v.FAILED),
    ("test_versioned[strongswan-6.0]", v.DOCUMENTED),
    ("test_versioned[strongswan-6.1]", v.FAILED),
    ("test_racy_passes[strongswan-6.0]", v.OK),  # intermittent: a pass is no stale expectation
    ("test_racy_fails[strongswan-6.0]", v.DOCUMENTED),
    ("test_racy_wire[strongswan-6.0]", v.DOCUMENTED),  # the wire check's PeerFault comes at teardown
])
def test_documented_differences(documented: dict[str, dict], test: str, verdict: str) -> None:
    assert documented[test]["verdict"] == verdict, documented[test]


def test_a_documented_record_carries_the_difference(documented: dict[str, dict]) -> None:
    r = documented["test_ike_auth[strongswan-6.0]"]
    assert r["difference"] == {"id": "ss-ike-auth", "reason": "answers IKE_AUTH with N(NO_PROPOSAL_CHOSEN) alone",
                               "evidence": "charon log: failed to establish CHILD_SA", "requirement": "RFC 7296 s1.2 MUST"}
    assert r["message"].startswith("documented difference ss-ike-auth: answers IKE_AUTH")
    stale = documented["test_ike_auth_fixed[strongswan-6.0]"]
    assert stale["difference"]["id"] == "ss-ike-auth" and "[XPASS(strict)] documented difference" in stale["message"]
    assert "difference" not in documented["test_ike_auth[strongswan-5.9]"]


def _write(tmp_path, name: str, rows) -> None:
    tmp_path.joinpath(name).write_text(json.dumps(rows))


@pytest.mark.parametrize("change, key", [
    ({"reason": "two\nlines"}, "reason"),
    ({"verdict_expected": "BROKEN"}, "verdict_expected"),
    ({"peers": "strongswan-6.0"}, "peers"),
    ({"peers": ["libreswan-5.2"]}, "peers"),
    ({"versions": [1]}, "versions"),
    ({"evidence": ""}, "evidence"),
    ({"colour": "red"}, "colour"),
    ({"id": None}, "id"),
])
def test_a_bad_row_names_file_row_and_key(tmp_path, change: dict, key: str) -> None:
    rows = [STRONGSWAN[0], {**STRONGSWAN[1], **change}]
    _write(tmp_path, "strongswan.json", rows)
    with pytest.raises(ConfigError, match=rf"strongswan.json: row 1: key '{key}'"):
        differences.load(tmp_path / "strongswan.json")


def test_a_missing_key_and_a_reused_id_are_config_errors(tmp_path) -> None:
    row = {k: val for k, val in STRONGSWAN[0].items() if k != "requirement"}
    _write(tmp_path, "strongswan.json", [row])
    with pytest.raises(ConfigError, match="row 0: key 'requirement': missing"):
        differences.load(tmp_path / "strongswan.json")
    _write(tmp_path, "strongswan.json", [STRONGSWAN[0]])
    _write(tmp_path, "libreswan.json", [{**LIBRESWAN[0], "id": "ss-ike-auth"}])
    with pytest.raises(ConfigError, match="strongswan.json: row 0: key 'id': 'ss-ike-auth' is already used in .*libreswan.json"):
        differences.load_all(tmp_path)
    tmp_path.joinpath("libreswan.json").write_text("{}")
    with pytest.raises(ConfigError, match="libreswan.json: expected a JSON list"):
        differences.load(tmp_path / "libreswan.json")


def test_the_project_differences_files_parse() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[3] / "suites" / "differences"
    found = {d.implementation for d in differences.load_all(root)}
    assert {p.stem for p in root.glob("*.json")} == {"strongswan", "libreswan"}
    assert found <= {"strongswan", "libreswan"}


def test_allure_sees_unimplemented_as_a_skip_and_non_strict_with_a_message(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_suite=SUITE)
    alluredir = pytester.path / "allure"
    pytester.runpytest("-p", "no:cacheprovider", f"--alluredir={alluredir}", f"--results-json={pytester.path / 'r.json'}",
                       "-k", "unsupported_proposal or test_non_strict or strict_xpass")
    results = {r["name"]: r for r in map(json.loads, map(lambda p: p.read_text(), alluredir.glob("*-result.json")))}
    assert results["test_unsupported_proposal"]["status"] == "skipped"
    assert "unimplemented:" in results["test_unsupported_proposal"]["statusDetails"]["trace"]
    assert results["test_non_strict"]["status"] == "passed"
    assert results["test_non_strict"]["statusDetails"]["message"].startswith("non-strict: RFC 7296 s2.23 SHOULD")
    assert results["test_strict_xpass"]["statusDetails"]["message"] == "[XPASS(strict)] fixed upstream?"
    assert json.loads((alluredir / "categories.json").read_text())
