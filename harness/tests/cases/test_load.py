"""The load run's pure parts (harness.cases.load): memory read from the guest, the sample, the plan and its
options, the figures; and that load cases are deselected unless asked for (harness.plugin)."""
from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

import pytest

from harness.cases.load import LoadFigures, LoadPlan, Memory, load_rows, parse_memory, plan_of, spread
from harness.errors import LabError
from harness.plugin import _asked_for_load

MEM = """VmHWM:\t   20480 kB
VmRSS:\t   19456 kB
MemTotal:         253000 kB
MemAvailable:     220000 kB
Slab:              12000 kB
"""


def test_memory_is_read_from_the_daemons_status_and_meminfo():
    assert parse_memory(MEM) == Memory(19456, 20480, 33000, 12000)
    assert parse_memory("MemTotal: 10 kB\n") == Memory(None, None, None, None)  # no daemon, no MemAvailable


def test_the_sample_is_spread_over_the_sas():
    assert spread(list(range(10)), 3) == [0, 3, 6]
    assert spread([1, 2], 5) == [1, 2] and spread([1, 2], 0) == []


class _Config:
    def __init__(self, **opts):
        self.opts = opts

    def getoption(self, name, default=None):
        return self.opts.get(name, default)


ROW = {"id": "n50", "n": 50, "rate": 20, "hold": 10, "sample": 10}


def test_the_plan_is_the_row_with_each_option_or_variable_in_place(monkeypatch):
    monkeypatch.delenv("IPSEC_INTEROP_LOAD_N", raising=False)
    monkeypatch.setenv("IPSEC_INTEROP_LOAD_HOLD", "3")
    assert plan_of(ROW, _Config(**{"--load-rate": "5"})) == LoadPlan(50, 5.0, 3.0, 10)
    monkeypatch.setenv("IPSEC_INTEROP_LOAD_SAMPLE", "many")
    with pytest.raises(LabError, match="SAMPLE"):
        plan_of(ROW, _Config())


def test_load_n_makes_one_row_of_that_n(tmp_path, monkeypatch):
    monkeypatch.delenv("IPSEC_INTEROP_LOAD_N", raising=False)
    table = tmp_path / "load.json"
    table.write_text('{"_source": "t", "rows": [{"id": "n50", "n": 50, "rate": 20, "hold": 10, "sample": 10, '
                     '"rfc": [7296, "1.2", "MUST"]}, {"id": "n200", "n": 200, "rate": 20, "hold": 10, "sample": 10, '
                     '"rfc": [7296, "1.2", "MUST"]}]}')
    assert [p.id for p in load_rows(table, _Config())] == ["n50", "n200"]
    (one,) = load_rows(table, _Config(**{"--load-n": "300"}))
    assert one.id == "n300" and one.values[0]["n"] == 300 and one.values[0]["rate"] == 20


def test_the_figures_name_failures_and_compute_rates():
    f = LoadFigures(LoadPlan(4, 2.0, 1.0, 1), established=3, setup_s=1.5, failures=Counter({"TEMPORARY_FAILURE": 1}),
                    establish_s=[0.1, 0.2, 0.4])
    props = dict(f.properties())
    assert props["load_setups_per_s"] == 2.0 and props["load_failed"] == 1
    assert props["load_failures"] == "TEMPORARY_FAILURE: 1"
    assert props["load_establish_median_s"] == 0.2 and props["load_establish_worst_s"] == 0.4
    assert "established 3/4" in f.summary() and "n/a" in f.summary()  # memory not read


def _item(path):
    return SimpleNamespace(path=path)


def test_load_cases_run_only_when_asked_for(tmp_path):
    here = tmp_path / "suites" / "load" / "test_load.py"

    def config(markexpr="", args=()):
        return SimpleNamespace(getoption=lambda k, d=None: markexpr if k == "markexpr" else d, args=list(args),
                               invocation_params=SimpleNamespace(dir=tmp_path))

    assert not _asked_for_load(config("lab", ["suites"]), _item(here))
    assert _asked_for_load(config("load"), _item(here)) and _asked_for_load(config("lab and load"), _item(here))
    assert not _asked_for_load(config("lab", ["suites/ike"]), _item(here))
    assert _asked_for_load(config("", ["suites/load"]), _item(here))
    assert _asked_for_load(config("", ["suites/load/test_load.py::test_x[n50-builtin>strongswan-6.0]"]), _item(here))
