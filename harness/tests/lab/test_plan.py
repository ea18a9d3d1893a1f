"""Address plan, topologies and labels: pure checks, no root needed."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from harness.errors import ConfigError, LabError
from harness.lab import addressing, labels, plan, topologies
from harness.lab.topology import parse_topology

RUN = "0badcafe"


def test_every_worker_segment_is_disjoint_and_in_the_lab_ranges():
    nets4, nets6 = [], []
    for w in range(addressing.MAX_WORKERS):
        nets4 += [addressing.segment_v4(w, s) for s in range(addressing.SEGMENTS_PER_WORKER)] + [addressing.management_v4(w)]
        nets6 += [addressing.segment_v6(w, s) for s in range(addressing.SEGMENTS_PER_WORKER)] + [addressing.management_v6(w)]
    assert len(set(nets4)) == len(nets4) and len(set(nets6)) == len(nets6)
    for a, b in zip(sorted(nets4), sorted(nets4)[1:]):
        assert not a.overlaps(b)
    assert all(n.subnet_of(addressing.V4_BLOCK) for n in nets4)
    assert all(n.subnet_of(addressing.V6_BLOCK) for n in nets6)


@pytest.mark.parametrize("worker,segment", [(-1, 0), (addressing.MAX_WORKERS, 0), (0, addressing.SEGMENTS_PER_WORKER)])
def test_out_of_plan_indices_are_refused(worker, segment):
    with pytest.raises(LabError):
        addressing.segment_v4(worker, segment)


@pytest.mark.parametrize("name", sorted(topologies()))
def test_two_workers_plans_never_share_an_address_or_name(name):
    topo = topologies()[name]
    seen: dict[str, int] = {}
    for w in (0, 1, 7):
        segs, nodes = plan(topo, w, RUN)
        for n in nodes.values():
            for i in n.interfaces:
                for a in (i.v4.ip, i.v6.ip):
                    assert addressing.in_lab_ranges(str(a))
                    assert seen.setdefault(str(a), w) == w, f"{a} given to workers {seen[str(a)]} and {w}"
                assert len(i.lab_ifname) <= 15 and len(i.ifname) <= 15
            if n.netns:
                assert n.netns.startswith(f"ipsi-{RUN}-{w}-{name}-")
        assert all(len(s.bridge) <= 15 for s in segs.values())


def test_routes_point_at_a_neighbour_on_a_shared_segment():
    segs, nodes = plan(topologies()["tunnel"], 2, RUN)
    (r,) = nodes["thost"].routes
    assert (r.v4_dst, r.v4_via) == ("default", nodes["tester"].address("tlan"))
    (r,) = nodes["peer"].routes
    assert (r.v4_dst, r.v4_via) == (str(segs["tlan"].v4), nodes["tester"].address("wan"))
    assert r.v6_via == nodes["tester"].address("wan", 6)


def test_peers_get_a_management_interface_last():
    _, nodes = plan(topologies()["p2p"], 0, RUN)
    left, right = nodes["left"], nodes["right"]
    assert [i.ifname for i in left.interfaces] == ["eth0", "eth1"]
    assert left.interface("mgmt").v4.network == addressing.management_v4(0)
    assert left.address("mgmt") != right.address("mgmt")


BASE = {"description": "d", "segments": ["a", "b"],
        "nodes": {"tester": {"kind": "tester", "links": [{"segment": "a", "host": 2}]}}}


@pytest.mark.parametrize("change,key", [
    ({"segments": []}, "segments"),
    ({"segments": ["a", "a"]}, "segments"),
    ({"segments": ["mgmt"]}, "segments"),
    ({"nodes": {"tester": {"kind": "router", "links": [{"segment": "a", "host": 2}]}}}, "kind"),
    ({"nodes": {"tester": {"kind": "tester", "links": [{"segment": "z", "host": 2}]}}}, "links[0]"),
    ({"nodes": {"tester": {"kind": "tester", "links": [{"segment": "a", "host": 255}]}}}, "links[0]"),
    ({"nodes": {"tester": {"kind": "tester", "links": [{"segment": "a", "host": 2}], "routes": [{"to": "b", "via": "x"}]}}}, "route via"),
    ({"nodes": {"averylongname": {"kind": "tester", "links": [{"segment": "a", "host": 2}]}}}, "nodes"),
    ({"nodes": {"n": {"kind": "nat", "links": [{"segment": "a", "host": 2}]}}}, "masquerade"),
])
def test_bad_topologies_are_refused_naming_the_key(change, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        parse_topology("bad", {**BASE, **change})


def test_run_ids_worker_index_and_names():
    r = labels.new_run_id()
    assert len(r) == 8 and int(r, 16) >= 0
    assert labels.worker_index({"PYTEST_XDIST_WORKER": "gw5"}) == 5
    assert labels.worker_index({}) == 0
    assert labels.run_of(labels.resource_name(r, 3, "lab")) == r
    assert labels.run_of("ipsi-nothex00-lab") is None
    with pytest.raises(LabError):
        labels.resource_name("../etc", "x")


def test_pid_records_match_pid_and_start_time(tmp_path, monkeypatch):
    monkeypatch.setattr(labels, "STATE_ROOT", tmp_path)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        path = labels.record_pid(RUN, child.pid, "sleeper", ["sleep"])
        ((p, rec),) = labels.pid_records(RUN)
        assert p == path and rec.alive() and rec.start_time == labels.proc_start_time(child.pid)
        forged = labels.PidRecord(child.pid, rec.start_time + 1, "reused pid")
        assert not forged.alive()
        json.loads(path.read_text())
        labels.forget_pid(RUN, child.pid)
        assert labels.pid_records(RUN) == []
    finally:
        child.kill()
        child.wait()
    assert labels.proc_start_time(child.pid) is None or labels.proc_start_time(child.pid) != rec.start_time
    assert labels.proc_start_time(os.getpid()) is not None
