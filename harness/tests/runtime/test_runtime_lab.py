"""Each built peer image under each runtime: boot, the kernel, the IKE daemon, and what the kernel does with an ESP SA.

Needs root, the images (`ipsec-interop setup`) and, for uml, linux.uml. Under uml the guest's own kernel
must install ESP SAs. Under docker the host kernel decides: the test asserts what the probe
(harness/runtime/probe.py) predicts for this host. Measured on the development host (kernel 6.18 without
ESP): the add fails with "Requested type not found." (EPROTONOSUPPORT, strongSwan's "Protocol not supported").
"""
from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator

import pytest

from harness.errors import LabError, LabUnavailable
from harness.lab import labels
from harness.runtime import get_runtime, images, probe, uml
from harness.runtime.base import LinkSpec, Node, NodeSpec

pytestmark = [pytest.mark.lab, pytest.mark.root]
DEFS = images.image_defs()


def _ids(d: images.ImageDef) -> str:
    return f"{d.peer}-{d.release}"


@pytest.fixture(scope="module")
def lab_netns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root: a lab network namespace and TAPs")
    run = labels.current_run_id()
    labels.register_owner(run)
    name = labels.resource_name(run, labels.worker_index(), "rtlab")
    subprocess.run(["ip", "netns", "add", name], check=True)
    yield name
    subprocess.run(["ip", "netns", "delete", name], check=False)
    labels.release_owner(run)


def _start(runtime: str, d: images.ImageDef, lab_netns: str, tag: str) -> Node:
    rt = get_runtime(runtime)
    why = rt.unavailable()
    if why:
        pytest.skip(f"runtime {runtime}: {why}")
    try:
        info = images.find_image(d.tag)
    except LabUnavailable as e:
        pytest.skip(str(e))
    short = f"{tag}{d.peer[0]}{d.release[0]}"
    links = [LinkSpec("eth0", "02:49:00:00:aa:00", f"{short}.0"), LinkSpec("eth1", "02:49:00:00:aa:ff", f"{short}.m")]
    node = rt.start(NodeSpec(short, d.tag, d.peer), lab_netns, links)
    assert node.image == info.name and node.version == info.version
    return node


def _daemon_runs(node: Node, peer: str) -> None:
    """The IKE daemon starts in the node and answers its own control tool."""
    if peer == "strongswan":
        node.spawn(["/usr/lib/ipsec/charon"], "/var/log/charon.log")
        probe_argv = ["swanctl", "--stats"]
    else:
        assert node.exec(["ipsec", "initnss"], timeout=60).rc == 0
        node.spawn(["ipsec", "pluto", "--config", "/etc/ipsec.conf", "--nofork", "--stderrlog"], "/var/log/pluto.log")
        probe_argv = ["ipsec", "whack", "--status"]
    # A generous bound: charon's first start under UML takes 5-7 s idle and far longer on a loaded host, and its
    # control tool blocks (rather than fails) while the daemon is still coming up; a tool that outlives its own
    # timeout is "not yet", not a failure.
    deadline = time.monotonic() + 120
    while True:
        try:
            r = node.exec(probe_argv, timeout=15)
            if r.rc == 0:
                return
            why = r.stderr
        except LabError as e:
            why = str(e).splitlines()[0]
        if time.monotonic() > deadline:
            log = node.exec(["cat", "/var/log/charon.log" if peer == "strongswan" else "/var/log/pluto.log"]).stdout
            pytest.fail(f"{' '.join(probe_argv)} did not answer within 120 s: {why}\n{log[-3000:]}")
        time.sleep(0.2)


def _version_line(node: Node, peer: str) -> str:
    r = node.exec(["swanctl", "--version", "--daemon"] if peer == "strongswan" else ["ipsec", "--version"])
    return r.stdout + r.stderr


def _links_in_lab(lab_netns: str) -> str:
    return subprocess.run(["ip", "-n", lab_netns, "-br", "link"], capture_output=True, text=True).stdout


@pytest.mark.parametrize("d", DEFS, ids=_ids)
def test_uml_guest_has_its_own_kernel_with_esp(d: images.ImageDef, lab_netns: str) -> None:
    with _start("uml", d, lab_netns, "u") as node:
        assert node.runtime == "uml"
        assert node.kernel == uml.kernel_version() == node.exec(["uname", "-r"]).stdout.strip()
        loaded = node.exec(["cat", "/proc/modules"]).stdout
        for m in ("esp4", "ah4", "xfrm_user", "xfrm4_tunnel", "authencesn", "chacha20poly1305"):
            assert f"{m} " in loaded, m
        for i in range(len(probe.PROBE_ALGORITHMS)):
            r = node.exec(["ip", *probe.esp_state_argv(i)])
            assert r.rc == 0, r.stderr
        assert node.exec(["ip", "xfrm", "state", "count"]).stdout.strip().endswith(str(len(probe.PROBE_ALGORITHMS)))
        assert node.exec(["ip", "-d", "-br", "link", "show", "eth0"]).stdout.split()[2] == "02:49:00:00:aa:00"
        assert f"u{d.peer[0]}{d.release[0]}.0" in _links_in_lab(lab_netns)  # the TAP is in the lab namespace
        _daemon_runs(node, d.peer)
        assert node.version.split("-")[0].split(":")[-1] in _version_line(node, d.peer)
        node.put_file("/etc/ipsec-interop-test.conf", b"private")
        assert node.get_file("/etc/ipsec-interop-test.conf") == b"private"
    assert not node.alive
    assert not (uml.rootfs_path(images.find_image(d.tag).image_id) / "etc/ipsec-interop-test.conf").exists()


@pytest.mark.parametrize("d", DEFS, ids=_ids)
def test_docker_container_runs_ike_on_the_host_kernel(d: images.ImageDef, lab_netns: str) -> None:
    with _start("docker", d, lab_netns, "d") as node:
        assert node.runtime == "docker" and node.kernel == os.uname().release
        assert node.exec(["ip", "-br", "link", "show", "eth1"]).stdout.split()[2] == "02:49:00:00:aa:ff"
        _daemon_runs(node, d.peer)
        assert node.version.split("-")[0].split(":")[-1] in _version_line(node, d.peer)
        found = probe.probe()
        r = node.exec(["ip", *probe.esp_state_argv(0)])
        if found.esp:
            assert r.rc == 0, r.stderr
        else:
            assert r.rc != 0 and r.stderr.strip() and r.stderr.strip() in found.detail
    assert not node.alive
    assert f"d{d.peer[0]}{d.release[0]}.0" not in _links_in_lab(lab_netns)  # the veth went with the container
