"""The steps of a case (harness.report.steps): the built-in end's events named as RFC 7296 names the exchanges, packet
batches and checks in time order with their statuses, and allure_meta.enrich writing them into an Allure TestResult."""
from __future__ import annotations

import dataclasses
import time

import pytest

from harness.errors import LabError, NoAnswer
from harness.ike.events import (ChildSaDeleted, ChildSaEstablished, ExchangeFailed, IkeSaDeleted, IkeSaEstablished,
                                Informational, KeRetry, PeerDead, RequestIgnored)
from harness.ike.export import IkeSaKeys
from harness.keys import IpsecSaKeys
from harness.report import allure_meta, steps
from harness.report.checks import should
from harness.report.collector import fault_step

SPI_I, SPI_R = bytes.fromhex("1a2b3c4d5e6f7081"), bytes.fromhex("3c4d5e6f70819203")
NEW_I, NEW_R = bytes.fromhex("aaaaaaaaaaaaaaaa"), bytes.fromhex("bbbbbbbbbbbbbbbb")
T0 = 1_765_000_000_000  # ms since the epoch


def _ike(spi_i: bytes, spi_r: bytes, rekeyed_from: bytes | None = None) -> IkeSaEstablished:
    keys = IkeSaKeys(spi_i, spi_r, "ENCR_AES_GCM_16", 256, bytes(36), bytes(36), None, b"", b"")
    return IkeSaEstablished(keys, "198.18.0.2", rekeyed_from, "psk")


def _child(spi_in: int, spi_out: int, rekeyed: int | None = None) -> ChildSaEstablished:
    def sa(spi: int, src: str, dst: str) -> IpsecSaKeys:
        return IpsecSaKeys("esp", spi, src, dst, "transport", "ENCR_AES_GCM_16", bytes(20))

    return ChildSaEstablished(sa(spi_in, "198.18.0.2", "198.18.0.1"), sa(spi_out, "198.18.0.1", "198.18.0.2"), (), (),
                              rekeyed_spi=rekeyed)


def test_life_cycle_names_and_order():
    events = [_ike(SPI_I, SPI_R), _child(0xC0FFEE01, 0xC0FFEE02), _child(0xC0FFEE03, 0xC0FFEE04, rekeyed=0xC0FFEE01),
              Informational(False, 2, ("D",)), ChildSaDeleted("esp", 0xC0FFEE01, 0xC0FFEE02),
              _ike(NEW_I, NEW_R, rekeyed_from=SPI_I + SPI_R), Informational(False, 3, ()),
              Informational(True, 4, ()), ChildSaDeleted("esp", 0xC0FFEE03, 0xC0FFEE04),
              IkeSaDeleted(NEW_I, NEW_R, "deleted by us")]
    times = [T0 + 10, T0 + 12, T0 + 2000, T0 + 2100, T0 + 2101, T0 + 4000, T0 + 5000, T0 + 6000, T0 + 6001, T0 + 6002]
    got = steps.exchange_steps(events, times, "builtin", "strongswan-6.0")
    assert [s.name for s in got] == [
        "IKE_SA_INIT + IKE_AUTH (builtin -> strongswan-6.0): IKE SA 1a2b3c4d5e6f7081/3c4d5e6f70819203, peer ID "
        "198.18.0.2, psk, Child SA ESP c0ffee01/c0ffee02",
        "CREATE_CHILD_SA rekey Child SA c0ffee01 -> ESP c0ffee03/c0ffee04",
        "INFORMATIONAL Delete Child SA ESP c0ffee01/c0ffee02 (request by the peer, Message ID 2)",
        "CREATE_CHILD_SA rekey IKE SA 1a2b3c4d5e6f7081/3c4d5e6f70819203 -> aaaaaaaaaaaaaaaa/bbbbbbbbbbbbbbbb",
        "INFORMATIONAL (request by the peer, Message ID 3): empty (liveness check)",
        "INFORMATIONAL Delete Child SA ESP c0ffee03/c0ffee04, IKE SA aaaaaaaaaaaaaaaa/bbbbbbbbbbbbbbbb (deleted by us) "
        "(request by the built-in end, Message ID 4)",
    ]
    assert (got[0].start, got[0].stop) == (T0 + 10, T0 + 12)  # the Child SA reported with its IKE SA joins its step
    assert (got[-1].start, got[-1].stop) == (T0 + 6000, T0 + 6002)
    assert [s.start for s in got] == sorted(s.start for s in got)
    assert all(s.status == steps.PASSED for s in got)


def test_ike_sa_step_starts_at_its_ike_sa_init():
    e = dataclasses.replace(_ike(SPI_I, SPI_R), started=100.0)  # on a clock 1000 s behind the epoch in ms
    got = steps.exchange_steps([e], [T0 + 900], "builtin", "strongswan-6.0", to_ms=lambda t: T0 + int(t))
    assert (got[0].start, got[0].stop) == (T0 + 100, T0 + 900)
    assert steps.exchange_steps([e], [T0 + 900], "builtin", "strongswan-6.0")[0].start == T0 + 900  # no clock: no start


def test_a_rekey_step_says_which_end_asked():
    ours = dataclasses.replace(_child(3, 4, rekeyed=1), we_initiated=True)
    theirs = dataclasses.replace(_ike(NEW_I, NEW_R, rekeyed_from=SPI_I + SPI_R), we_initiated=False)
    got = steps.exchange_steps([ours, theirs], [T0, T0 + 1000], "builtin", "strongswan-6.0")
    assert got[0].name.endswith("00000003/00000004 (request by the built-in end)")
    assert got[1].name.endswith("aaaaaaaaaaaaaaaa/bbbbbbbbbbbbbbbb (request by the peer)")


def test_child_sa_reported_later_is_its_own_exchange():
    got = steps.exchange_steps([_ike(SPI_I, SPI_R), _child(1, 2)], [T0, T0 + 5000], "strongswan-6.0", "builtin")
    assert [s.name.split(":")[0] for s in got] == ["IKE_SA_INIT + IKE_AUTH (strongswan-6.0 -> builtin)",
                                                   "CREATE_CHILD_SA new Child SA ESP 00000001/00000002"]


def test_removal_without_informational_is_its_own_step():
    got = steps.exchange_steps([ChildSaDeleted("ah", 5, 6), IkeSaDeleted(SPI_I, SPI_R, "replaced by a rekey")],
                               [T0, T0 + 1], "builtin", "strongswan-6.0")
    assert [s.name for s in got] == ["Child SA AH 00000005/00000006 removed",
                                     "IKE SA 1a2b3c4d5e6f7081/3c4d5e6f70819203 (replaced by a rekey) removed"]


def test_refused_and_unanswered_exchanges_are_recorded_not_judged():
    events = [KeRetry("IKE_SA_INIT", 19), ExchangeFailed("IKE_AUTH", "AUTHENTICATION_FAILED", "bad PSK", True),
              PeerDead("INFORMATIONAL", 4), RequestIgnored("IKE_SA_INIT", 0, SPI_I, 1.0, b"x")]
    got = steps.exchange_steps(events, [T0, T0 + 1, T0 + 2, T0 + 3], "builtin", "libreswan-5.2")
    assert [(s.name, s.status) for s in got] == [
        ("IKE_SA_INIT: N(INVALID_KE_PAYLOAD), again with KE group 19", "passed"),
        ("IKE_AUTH refused: N(AUTHENTICATION_FAILED) received: bad PSK", "passed"),
        ("INFORMATIONAL (Message ID 4): no answer after every retransmission", "passed"),
        ("IKE_SA_INIT request (Message ID 0) left unanswered on purpose", "passed"),
    ]


class _Item:
    def __init__(self) -> None:
        self.user_properties: list = []


def test_recorded_in_time_order_with_checks_and_batches():
    item = _Item()
    batch = steps.check_step("ESP batch: 3 echo requests builtin -> strongswan-6.0, 3 replies decrypted", True,
                             T0 + 3000, T0 + 3200)
    wire = steps.check_step("wire check: 1 problem(s)", False, T0 + 9000, T0 + 9500, [("decrypted", "12")])
    steps.record(item, [wire, batch])
    steps.record(item, steps.exchange_steps([_ike(SPI_I, SPI_R)], [T0], "builtin", "strongswan-6.0"))
    got = steps.recorded(item)
    assert [s.start for s in got] == [T0, T0 + 3000, T0 + 9000]
    assert [s.status for s in got] == ["passed", "passed", "failed"]
    assert got[2].parameters == (("decrypted", "12"),)


def test_should_records_a_check_step():
    item = _Item()
    before = steps.now_ms()
    assert should(item, True, "RFC 7296 s2.4 SHOULD", "late")
    assert not should(item, False, "RFC 3948 s2.3 SHOULD", "no NAT-keepalive")
    got = steps.recorded(item)
    assert [(s.name, s.status) for s in got] == [("check RFC 7296 s2.4 SHOULD: met", "passed"),
                                                 ("check RFC 3948 s2.3 SHOULD: not met: no NAT-keepalive", "failed")]
    assert all(before <= s.start <= s.stop <= steps.now_ms() for s in got)
    assert item.user_properties == [("non_strict", "RFC 3948 s2.3 SHOULD: no NAT-keepalive")]


def test_a_fault_is_a_failed_step_a_lab_error_a_broken_one():
    failed = fault_step(NoAnswer("no CREATE_CHILD_SA answer\nlog tail", "RFC 7296 s1.3.3 MUST"), 1_765_000_000.5)
    assert (failed.name, failed.status, failed.start, failed.stop) == (
        "check RFC 7296 s1.3.3 MUST: no CREATE_CHILD_SA answer", "failed", T0 + 500, T0 + 500)
    assert fault_step(LabError("guest did not boot"), 1.0).status == "broken"


def test_a_run_of_the_same_check_is_one_step():
    item = _Item()
    steps.record(item, [steps.check_step("check RFC 7296 s2.23 SHOULD: met", True, T0 + i, T0 + i) for i in range(5)])
    steps.record(item, [steps.check_step("check RFC 7296 s2.23 SHOULD: not met: port 4500", False, T0 + 9, T0 + 9),
                        steps.check_step("check RFC 7296 s2.23 SHOULD: met", True, T0 + 10, T0 + 10)])
    assert [(s.name, s.status, s.start, s.stop) for s in steps.recorded(item)] == [
        ("check RFC 7296 s2.23 SHOULD: met (5 times)", "passed", T0, T0 + 4),
        ("check RFC 7296 s2.23 SHOULD: not met: port 4500", "failed", T0 + 9, T0 + 9),
        ("check RFC 7296 s2.23 SHOULD: met", "passed", T0 + 10, T0 + 10)]


def test_epoch_ms_converts_the_clock():
    to_ms = steps.epoch_ms(time.monotonic)
    assert abs(to_ms(time.monotonic()) - steps.now_ms()) < 1000


def test_enrich_writes_steps_into_the_test_result():
    model2 = pytest.importorskip("allure_commons.model2")
    result = model2.TestResult(name="case")
    recorded = [steps.check_step("ESP batch: 3 echo requests", True, T0, T0 + 100, [("replies", "3")]),
                steps.check_step("wire check: 1 problem(s)", False, T0 + 200, T0 + 300)]
    allure_meta.enrich(result, [], [], "FAILED", recorded)
    allure_meta.enrich(result, [], [], "FAILED", recorded)  # none twice
    assert [(s.name, s.status, s.start, s.stop) for s in result.steps] == [
        ("ESP batch: 3 echo requests", "passed", T0, T0 + 100), ("wire check: 1 problem(s)", "failed", T0 + 200, T0 + 300)]
    assert all(isinstance(s, model2.TestStepResult) for s in result.steps)
    assert [(p.name, p.value) for p in result.steps[0].parameters] == [("replies", "3")]


def test_wire_exchanges_pair_requests_with_responses():
    from harness.tools.ike_decrypt import IkeResult

    A, B = "198.18.0.2", "198.18.0.3"

    def msg(ms: int, exchange: str, mid: int, initiator: bool, response: bool, payloads: str, **kw) -> tuple:
        src, dst = (A, B) if initiator else (B, A)
        return ms * 1_000_000, IkeResult(0, kw.pop("status", "decrypted"), SPI_I, SPI_R if mid or response else bytes(8),
                                         exchange, mid, initiator, response, payloads.split(), src=src, dst=dst, **kw)

    wire = [msg(1, "IKE_SA_INIT", 0, True, False, "SA KE Nonce", status="unencrypted"),
            msg(2, "IKE_SA_INIT", 0, True, False, "SA KE Nonce", status="unencrypted"),  # resent
            msg(3, "IKE_SA_INIT", 0, False, True, "N(COOKIE)", status="unencrypted"),
            msg(4, "IKE_SA_INIT", 0, True, False, "N(COOKIE) SA KE Nonce", status="unencrypted"),  # a new exchange
            msg(5, "IKE_SA_INIT", 0, False, True, "SA KE Nonce", status="unencrypted"),
            msg(6, "IKE_AUTH", 1, True, False, "SKF", status="unknown_spi", fragment=(1, 2)),  # completed by 7
            msg(7, "IKE_AUTH", 1, True, False, "SK", status="unknown_spi", fragment=(2, 2), reassembled_from=[6]),
            msg(8, "IKE_AUTH", 1, False, True, "SK", status="unknown_spi"),
            msg(9, "INFORMATIONAL", 0, False, False, "D"),  # the responder's own Message ID 0
            msg(10, "INFORMATIONAL", 0, True, True, "D"),
            msg(11, "INFORMATIONAL", 2, True, False, "")]
    got = steps.wire_exchange_steps(wire, {A: "strongswan-6.0", B: "libreswan-5.2"})
    assert [(s.name.split(" (")[0], s.start, s.stop) for s in got] == [
        ("IKE_SA_INIT strongswan-6.0 -> libreswan-5.2", 1, 3), ("IKE_SA_INIT strongswan-6.0 -> libreswan-5.2", 4, 5),
        ("IKE_AUTH strongswan-6.0 -> libreswan-5.2", 7, 8), ("INFORMATIONAL libreswan-5.2 -> strongswan-6.0", 9, 10),
        ("INFORMATIONAL strongswan-6.0 -> libreswan-5.2", 11, 11)]
    assert got[0].name.endswith("request [SA KE Nonce], response [N(COOKIE)]")
    assert got[2].name.endswith("request [SK (no keys for this IKE SA)], response [SK (no keys for this IKE SA)]")
    assert got[-1].name.endswith("request [], no response on the wire")
