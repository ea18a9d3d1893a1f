"""Load (issue 13): N IKE SAs from the built-in end to the peer, held while a sample carries traffic, then deleted.

Runs on request only (`-m load`, or this folder's path): the load marker is deselected otherwise (harness.plugin).
One row of load.json a case, against each selected peer (builtin>peer); harness.cases.load runs it and the figures
(setups per second, failures by notify, retransmissions, time to establish median and worst, what the peer holds,
the sample's answers, the peer daemon's and guest's memory) become the case's properties and a printed summary.
Any failure fails the case: the largest N that passes is the largest held with no failure at that rate.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.cases.load import LoadRun, load_rows, plan_of
from harness.errors import PeerFault

pytestmark = [pytest.mark.lab, pytest.mark.root, pytest.mark.load]

TABLE = Path(__file__).with_name("load.json")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "row" in metafunc.fixturenames:
        metafunc.parametrize("row", load_rows(TABLE, metafunc.config))


@pytest.mark.ends("builtin>peer")
def test_many_ike_sas_are_established_held_and_deleted(pair, row, request, record_property):
    plan = plan_of(row, request.config)
    pair.load(pair.connection())
    run = LoadRun(pair, plan)
    try:
        figures = run.run()
    finally:
        for k, v in run.figures.properties():
            record_property(k, v)
    print("\n" + figures.summary())
    if figures.failed:
        raise PeerFault(f"{figures.failed} failure(s) under load: {dict(figures.failures)}; {figures.summary()}",
                        pair.requirement)
