"""`ipsec-interop clean`: removes what a SIGKILLed run left, by pid and start time, and nothing else."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from harness.lab import labels, netns
from harness.lab.cleanup import clean

pytestmark = pytest.mark.root

CHILD = """
import subprocess, sys, time
from harness.lab import Lab, labels
run = sys.argv[1]
lab = Lab('tunnel', run=run, worker=5).build()
sleeper = subprocess.Popen(['sleep', '300'])
labels.record_pid(run, sleeper.pid, 'sleeper', ['sleep', '300'])
print(sleeper.pid, flush=True)
time.sleep(300)
"""


def test_clean_removes_a_lab_left_by_a_sigkilled_process():
    run = labels.new_run_id()
    child = subprocess.Popen([sys.executable, "-c", CHILD, run], stdout=subprocess.PIPE, text=True)
    try:
        sleeper = int(child.stdout.readline())
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
    assert len(netns.names(f"ipsi-{run}-")) == 4
    start = labels.proc_start_time(sleeper)
    assert start is not None
    removed = clean(run=run, say=lambda s: None)
    assert netns.names(f"ipsi-{run}-") == []
    assert labels.proc_start_time(sleeper) != start, "the recorded sleeper must have been stopped"
    assert f"process {sleeper} (sleeper) of run {run}" in removed
    assert sum(r.startswith("namespace ") for r in removed) == 4
    assert not labels.state_dir(run).exists()
    assert clean(run=run, say=lambda s: None) == []


def test_clean_spares_a_process_whose_start_time_differs_and_live_runs():
    run = labels.new_run_id()
    bystander = subprocess.Popen(["sleep", "30"])
    try:
        start = labels.proc_start_time(bystander.pid)
        rec = labels.record_pid(run, bystander.pid, "pid reused since")
        rec.write_text(rec.read_text().replace(f'"start_time": {start}', f'"start_time": {start + 1}'))
        netns.create(labels.resource_name(run, 0, "x", "lab"))
        labels.register_owner(run)  # this test process: the run is live
        assert clean(run=run, say=lambda s: None) == []
        assert netns.names(f"ipsi-{run}-") != []
        labels.release_owner(run)
        removed = clean(run=run, say=lambda s: None)
        assert bystander.poll() is None, "a process whose start time differs is not ours"
        assert removed == [f"namespace ipsi-{run}-0-x-lab", f"state dir {labels.state_dir(run)}"]
    finally:
        bystander.kill()
        bystander.wait()
        netns.delete(labels.resource_name(run, 0, "x", "lab"))


def test_clean_command_is_safe_when_nothing_is_there():
    r = subprocess.run([sys.executable, "-m", "harness.cli", "clean", "--run", labels.new_run_id()],
                       capture_output=True, text=True)
    assert (r.returncode, r.stdout) == (0, "nothing to clean\n")


def test_clean_removes_containers_labelled_with_the_run():
    from harness.lab import peering

    built, reason = peering.built_peers()
    if not built:
        pytest.skip(f"needs a docker daemon and one built image: {reason}")
    import docker

    client = docker.from_env(timeout=30)
    run, other = labels.new_run_id(), labels.new_run_id()
    made = [client.containers.create(f"ipsec-interop/{built[0]}", ["sleep", "300"], network_mode="none",
                                     name=labels.resource_name(r, 0, "cleantest"), labels={labels.DOCKER_LABEL: r})
            for r in (run, other)]
    try:
        removed = clean(run=run, say=lambda s: None)
        assert removed == [f"container {labels.resource_name(run, 0, 'cleantest')}"]
        left = {c.name for c in client.containers.list(all=True, filters={"label": labels.DOCKER_LABEL})}
        assert made[1].name in left and made[0].name not in left, "only the named run's container goes"
    finally:
        for c in made:
            try:
                c.remove(force=True)
            except docker.errors.NotFound:
                pass


def test_clean_stops_a_recorded_process_group_with_its_children():
    run = labels.new_run_id()
    leader = subprocess.Popen(["sh", "-c", "sleep 300 & echo $!; wait"], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    child = int(leader.stdout.readline())
    child_start = labels.proc_start_time(child)
    labels.record_pid(run, leader.pid, "group leader", ["sh"])
    try:
        removed = clean(run=run, say=lambda s: None)
        leader.wait(timeout=10)
        assert f"process {leader.pid} (group leader) of run {run}" in removed
        for _ in range(100):
            if labels.proc_start_time(child) != child_start:
                break
            time.sleep(0.05)
        assert labels.proc_start_time(child) != child_start, "the leader's child went with the group"
    finally:
        if leader.poll() is None:
            leader.kill()
