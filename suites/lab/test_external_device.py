"""--runtime external for real: a device the harness did not start, on the lab wire, under the same suites (issue 13).

The "device" is strongSwan 6.0 booted under User-Mode Linux (this host's kernel has no ESP/AH) in a network
namespace this test makes, not the lab: its TAP joins a bridge there, and its configuration is written by hand
(external/swanctl.conf.in, external/strongswan.conf.in, rendered here), never through harness/peers adapters.
The test writes the device's profile ([wire] kind = "netns": the lab lays a veth into that namespace and joins it to
the bridge), runs a few rows of suites/ike/test_proposals.py against it with `--runtime external --profile FILE`,
then the same rows against the harness's own strongSwan 6.0 (`--runtime uml`), and requires: every row the profile
declares ran and got the verdict the reference peer got; the undeclared row and the device-initiated pairs were
skipped naming the profile key; and nothing of either run is left (namespaces, the veth in the device namespace).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from string import Template

import pytest

from harness.errors import LabUnavailable
from harness.lab import labels, netns
from harness.runtime.base import LinkSpec, NodeSpec

pytestmark = [pytest.mark.lab, pytest.mark.root]
HERE = Path(__file__).parent / "external"
IMAGE = "strongswan-6.0"
ADDRESS = "198.19.250.3"  # in the lab's block, outside every worker's segments and management nets (198.19.0-31)
ADDRESS6 = "2001:db8:fe::3"  # outside every worker's 2001:db8:W:s::/64 (W < 32)
DEFAULT = "aes128gcm16-prfsha256-ecp256.aes128gcm16"  # the proposals of a case that names none (harness.peers.connection)
PSK = "external device proposal test 7f3c"
LOCAL_ID, REMOTE_ID = "device.example.net", "tester.example.net"
DECLARED = ["aes128-prfsha256-sha256-ecp256.aes128-sha256-noesn", "aes128-prfsha1-sha1-modp2048.aes128-sha1-esn",
            "chacha20poly1305-prfsha512-modp3072.aes128gcm8-noesn"]
UNDECLARED = "aes256-prfsha1-sha1-modp3072.aes128-sha384-noesn"
TEST = "suites/ike/test_proposals.py::test_proposal"
# cases of other suites whose needs the profile below declares (builtin>peer; {peer} is the device or the reference)
OTHERS = ["suites/ike/test_childless.py::test_a_childless_ike_sa_gets_its_child_sa_by_create_child_sa[builtin>{peer}-initiator]",
          "suites/ike/test_negotiation.py::test_negotiation[builtin>{peer}-ike-second-proposal]",
          "suites/ike/test_negotiation.py::test_negotiation[builtin>{peer}-ike-one-transform-of-several]",
          "suites/ike/test_negotiation.py::test_negotiation[builtin>{peer}-child-second-proposal]",
          "suites/ike/test_negotiation.py::test_negotiation[builtin>{peer}-child-one-transform-of-several]",
          "suites/ike/test_negotiation.py::test_negotiation[builtin>{peer}-ike-no-common-encr]",
          "suites/ike/test_negotiation.py::test_a_non_aead_cipher_without_integrity_is_no_proposal_chosen[builtin>{peer}]",
          "suites/ike/test_selectors.py::test_selectors[builtin>{peer}-transport-hosts]",
          "suites/esp/test_first_packets.py::test_the_peer_protects_its_replies_from_the_response_on[builtin>{peer}-IKE_AUTH]",
          "suites/esp/test_first_packets.py::test_the_peer_protects_its_replies_from_the_response_on[builtin>{peer}-CREATE_CHILD_SA]",
          "suites/rekey/test_collisions.py::test_a_rekey_of_a_child_sa_the_peer_does_not_have[builtin>{peer}]",
          "suites/interop/test_connections.py::test_connection_carries_traffic[builtin>{peer}-esp-transport-aes128gcm16]"]
# cases the device cannot run as declared, and the profile key each skip must name
SKIPPED = {"suites/ike/test_ike_sa.py::test_certificate_authentication[builtin>{peer}-p256]": "credentials.certificate",
           "suites/interop/test_connections.py::test_connection_carries_traffic[builtin>{peer}-esp-tunnel-aes256-sha256]":
               "features.modes",
           "suites/interop/test_connections.py::test_connection_carries_traffic[builtin>{peer}-ah-transport-sha256]":
               "proposals.ah",
           "suites/ike/test_retransmission.py::test_a_request_beyond_the_window_is_ignored[builtin>{peer}-next-outside]":
               "control.list_sas"}
LOG = "/var/log/charon-device.log"
VERBS = {"list-sas": ["swanctl", "--list-sas"],  # what the relay runs in the guest for the hook (hook.py)
         "initiate": ["swanctl", "--initiate", "--child", "lab", "--timeout", "20"],
         "terminate": ["swanctl", "--terminate", "--ike", "lab", "--timeout", "20"]}
WAIT = 120.0


def _sh(argv: list[str]) -> str:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, f"{' '.join(argv)}: {r.stderr}"
    return r.stdout


def _guest(node, argv: list[str]) -> str:  # noqa: ANN001
    r = node.exec(argv, timeout=30)
    assert r.rc == 0, f"device: {' '.join(argv)}: rc {r.rc}: {r.stderr}"
    return r.stdout


def _tester_address() -> str:
    """The tester's IPv4 address in the child runs' lab (worker 0, topology direct): where the device initiates to."""
    from harness.lab.lab import Lab

    return next(n for n in Lab("direct", run="00000000", worker=0).nodes.values() if n.kind == "tester").address()


def _relay(node, path: Path) -> socket.socket:  # noqa: ANN001
    """A unix socket at path answering hook.py: one line naming a verb of VERBS, answered "ok"/"failed", a newline
    and swanctl's output (the stand-in for an owner's ssh to the device). Served by a daemon thread until closed."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return  # closed
            with conn:
                verb = conn.makefile("rb").readline().decode().strip()
                try:
                    r = node.exec(VERBS[verb], timeout=40)
                    reply = (b"ok\n" if r.rc == 0 else b"failed\n") + (r.stdout + r.stderr).encode()
                except Exception as e:  # noqa: BLE001 - a hook failure is reported to the hook, which exits 1
                    reply = f"failed\n{type(e).__name__}: {e}".encode()
                conn.sendall(reply)

    threading.Thread(target=serve, name="device-hook-relay", daemon=True).start()
    return server


@pytest.fixture(scope="module")
def device(tmp_path_factory):  # noqa: ANN001
    """(namespace, UML node, hook socket): strongSwan 6.0 in a namespace of its own, configured by hand, loaded."""
    if os.geteuid() != 0:
        pytest.skip("needs root: namespaces, TAPs and UML")
    from harness.runtime.uml import UmlRuntime

    rt = UmlRuntime()
    if reason := rt.unavailable():
        pytest.skip(f"runtime uml: {reason}")
    run = labels.new_run_id()  # a run of its own: its state directory goes when it is released
    labels.register_owner(run)
    ns = labels.resource_name(run, "extdev")
    netns.create(ns)
    node = relay = None
    try:
        try:
            node = rt.start(NodeSpec("extdev", IMAGE, "strongswan", run=run, worker=0), ns,
                            [LinkSpec("eth0", "02:49:ee:00:00:03", "extdev-tap")])
        except LabUnavailable as e:
            pytest.skip(f"the stand-in device cannot boot here: {e}")
        for argv in (["ip", "-n", ns, "link", "add", "br0", "type", "bridge"],
                     ["ip", "-n", ns, "link", "set", "extdev-tap", "master", "br0", "up"],
                     ["ip", "-n", ns, "link", "set", "br0", "up"]):
            _sh(argv)
        for argv in (["ip", "link", "set", "lo", "up"], ["ip", "addr", "add", f"{ADDRESS}/32", "dev", "eth0"],
                     ["ip", "-6", "addr", "add", f"{ADDRESS6}/128", "dev", "eth0", "nodad"],
                     ["ip", "link", "set", "eth0", "up"], ["ip", "route", "add", "198.18.0.0/15", "dev", "eth0"],
                     ["ip", "-6", "route", "add", "2001:db8::/32", "dev", "eth0"]):
            _guest(node, argv)
        ike = ",".join(r.split(".")[0] for r in [DEFAULT, *DECLARED])
        esp = ",".join(r.split(".")[1] for r in [DEFAULT, *DECLARED])
        values = {"address": f"{ADDRESS},{ADDRESS6}", "tester": _tester_address(), "ike": ike, "esp": esp, "local_id": LOCAL_ID, "remote_id": REMOTE_ID, "psk": PSK,
                  "log_path": LOG}
        node.put_file("/etc/swanctl/swanctl.conf", Template((HERE / "swanctl.conf.in").read_text()).substitute(values).encode())
        node.put_file("/etc/strongswan.conf", Template((HERE / "strongswan.conf.in").read_text()).substitute(values).encode())
        node.spawn(["/usr/lib/ipsec/charon"], "/var/log/charon-device.stdout")
        deadline = time.monotonic() + WAIT
        while (r := node.exec(["swanctl", "--load-all"], timeout=30)).rc != 0:
            assert time.monotonic() < deadline, f"charon did not load the hand-written config: {r.stdout} {r.stderr}"
            time.sleep(0.5)
        sock = tmp_path_factory.mktemp("hook") / "relay.sock"
        relay = _relay(node, sock)
        yield ns, node, sock
    finally:
        if relay is not None:
            relay.close()
        try:
            if node is not None:
                node.stop()
        finally:
            netns.delete(ns)
            labels.release_owner(run)


def _profile(path: Path, ns: str, hook: Path | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ike = ", ".join(f'"{r.split(".")[0]}"' for r in [DEFAULT, *DECLARED])
    esp = ", ".join(f'"{r.split(".")[1]}"' for r in [DEFAULT, *DECLARED])
    path.write_text(f'''name = "extdev"
version = "6.0.1 (strongSwan under UML, configured by hand)"
kernel = "UML guest"
[address]
ipv4 = "{ADDRESS}"
ipv6 = "{ADDRESS6}"
[identity]
local = "{LOCAL_ID}"
remote = "{REMOTE_ID}"
[credentials]
psk = "{PSK}"
[proposals]
ike = [{ike}]
esp = [{esp}]
[features]
modes = ["transport"]
esn = true
initiators = ["tester"]
[wire]
kind = "netns"
netns = "{ns}"
ifname = "lab0"
bridge = "br0"
''')
    if hook is not None:  # the control hooks: the device is read and may initiate
        client = [sys.executable, str(HERE / "hook.py"), str(hook)]
        path.write_text(path.read_text().replace('initiators = ["tester"]', 'initiators = ["tester", "device"]') + f'''
[control]
list_sas = {_toml_list([*client, "list-sas"])}
initiate = {_toml_list([*client, "initiate"])}
terminate = {_toml_list([*client, "terminate"])}
format = "swanctl"
timeout = 60
''')
    return path


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


def _run(tmp: Path, name: str, run: str, ids: list[str], *options: str) -> dict[str, tuple[str, str]]:
    """Run pytest on ids in a child (run id `run`); {test id: (outcome, message)} from its JUnit XML."""
    xml = tmp / f"{name}.xml"
    # not the xdist worker's variables: the child is a session of its own, worker 0 (as _tester_address assumes)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}, labels.RUN_ENV: run}
    r = subprocess.run([sys.executable, "-m", "pytest", *ids, *options, "-p", "no:cacheprovider", "-q",
                        f"--junitxml={xml}", "--capture-dir", str(tmp / name)], cwd=Path(__file__).parents[2],
                       env=env, capture_output=True, text=True, timeout=1800)
    assert xml.exists(), f"{name}: no JUnit XML (rc {r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    out = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        kids = {c.tag: c for c in case}
        kind = next((k for k in ("failure", "error", "skipped") if k in kids), "passed")
        out[case.get("name", "")] = (kind, (kids[kind].get("message", "") if kind in kids else ""))
    return out


def _ids(peer: str) -> list[str]:
    rows = [f"{TEST}[{a}>{b}-{row}]" for row in [*DECLARED, UNDECLARED] for a, b in (("builtin", peer), (peer, "builtin"))]
    return rows + [t.format(peer=peer) for t in OTHERS]


def _name(node_id: str) -> str:
    """The JUnit testcase name of a node id (the function and its parameters)."""
    return node_id.split("::")[-1]


def test_the_suites_judge_a_device_they_did_not_start_as_they_judge_their_own_peer(device, tmp_path: Path,
                                                                                 record_property) -> None:
    ns, _, hook = device
    profile = _profile(tmp_path / "extdev.toml", ns)
    hooked = _profile(tmp_path / "hooked" / "extdev.toml", ns, hook)
    runs = [labels.new_run_id() for _ in range(3)]
    t0 = time.monotonic()
    ext = _run(tmp_path, "external", runs[0], [*_ids("extdev"), *(t.format(peer="extdev") for t in SKIPPED)],
               "--runtime", "external", "--profile", str(profile))
    t1 = time.monotonic()
    ref = _run(tmp_path, "reference", runs[1], _ids(IMAGE), "--runtime", "uml", "--peer", IMAGE)
    t2 = time.monotonic()
    with_hooks = _run(tmp_path, "hooked", runs[2], _ids("extdev"), "--runtime", "external", "--profile", str(hooked))
    record_property("external_s", round(t1 - t0, 1))
    record_property("reference_s", round(t2 - t1, 1))
    record_property("external_hooks_s", round(time.monotonic() - t2, 1))
    overlap = [f"{TEST}[builtin>{{peer}}-{row}]" for row in DECLARED] + OTHERS
    for case in overlap:
        e, r = ext[_name(case.format(peer="extdev"))], ref[_name(case.format(peer=IMAGE))]
        assert e[0] != "skipped", f"{case}: its needs are declared by the profile, but it was skipped: {e[1]}"
        assert e[0] == r[0], f"{case}: the device's verdict {e} differs from the reference peer's {r}"
    record_property("overlap", f"{len(overlap)} cases, device verdicts " +
                    ", ".join(f"{k} {n}" for k, n in sorted(_count(ext[_name(c.format(peer='extdev'))][0] for c in overlap))))
    # with its control hooks the device is read (its SPIs must cross the built-in end's, its counters count the
    # echo requests) and initiates: the rows it initiates run too, with the reference peer's verdicts
    hooked_overlap = overlap + [f"{TEST}[{{peer}}>builtin-{row}]" for row in DECLARED]
    for case in hooked_overlap:
        e, r = with_hooks[_name(case.format(peer="extdev"))], ref[_name(case.format(peer=IMAGE))]
        assert e[0] != "skipped", f"{case} (hooks): its needs are declared by the profile, but it was skipped: {e[1]}"
        assert e[0] == r[0], f"{case} (hooks): the device's verdict {e} differs from the reference peer's {r}"
    record_property("overlap_hooks", f"{len(hooked_overlap)} cases")
    kind, why = ext[_name(f"{TEST}[builtin>extdev-{UNDECLARED}]")]
    assert kind == "skipped" and "proposals.ike" in why and str(profile) in why, (kind, why)
    for row in [*DECLARED, UNDECLARED]:
        kind, why = ext[_name(f"{TEST}[extdev>builtin-{row}]")]
        assert kind == "skipped" and ("features.initiators" in why or "proposals.ike" in why), (row, kind, why)
    for case, key in SKIPPED.items():
        kind, why = ext[_name(case.format(peer="extdev"))]
        assert kind == "skipped" and key in why and str(profile) in why, (case, kind, why)
    kind, why = with_hooks[_name(f"{TEST}[extdev>builtin-{UNDECLARED}]")]
    assert kind == "skipped" and "proposals.ike" in why, (kind, why)
    left = [n for n in _sh(["ip", "netns", "list"]).split() if any(f"ipsi-{r}-" in n for r in runs)]
    assert not left, f"namespaces left by the runs: {left}"
    links = _sh(["ip", "-n", ns, "-o", "link", "show"])
    assert "lab0" not in links, f"the lab's veth is left in the device namespace:\n{links}"


def _count(kinds) -> list[tuple[str, int]]:  # noqa: ANN001
    out: dict[str, int] = {}
    for k in kinds:
        out[k] = out.get(k, 0) + 1
    return list(out.items())


def test_the_lab_wires_a_plain_namespace_device_and_takes_the_wire_away(tmp_path: Path) -> None:
    """[wire] kind = "netns" without a bridge: the lab gives the far end the device's address; the tester reaches it
    on-link; stopping the peer, then closing the lab, leaves nothing in the device's namespace or the host's."""
    if os.geteuid() != 0:
        pytest.skip("needs root: namespaces")
    from harness.lab import peering
    from harness.lab.lab import Lab

    run = labels.new_run_id()
    ns = labels.resource_name(run, "plaindev")
    netns.create(ns)
    try:
        profile = _profile(tmp_path / "plain.toml", ns).read_text().replace('bridge = "br0"\n', "")
        (tmp_path / "plain.toml").write_text(profile)
        root_links = _sh(["ip", "-o", "link", "show"]).count("\n")
        with Lab("direct", run=run, worker=0) as lab:
            h = peering.start_peer(lab, "peer", "extdev", "external", str(tmp_path / "plain.toml"))
            assert lab.node("peer").address() == ADDRESS
            assert f"inet {ADDRESS}/32" in _sh(["ip", "-n", ns, "addr", "show", "dev", "lab0"])
            assert lab.ping("tester", ADDRESS, count=2, timeout=5.0), "the tester cannot reach the device on-link"
            h.stop()
            assert "lab0" not in _sh(["ip", "-n", ns, "-o", "link", "show"])
            h.stop()  # idempotent
        assert not [n for n in _sh(["ip", "netns", "list"]).split() if f"ipsi-{run}-" in n and n != ns]
        assert _sh(["ip", "-o", "link", "show"]).count("\n") == root_links  # nothing in the host's namespace
    finally:
        netns.delete(ns)
        labels.release_owner(run)


CHILD = """
import sys, time
from harness.lab import peering
from harness.lab.lab import Lab
with Lab("direct", run=sys.argv[1], worker=0) as lab:
    peering.start_peer(lab, "peer", "extdev", "external", sys.argv[2])
    print("ready", flush=True)
    while True:
        time.sleep(0.1)
"""


@pytest.mark.parametrize("how", ["ctrl-c", "killed-then-clean"])
def test_the_wire_goes_on_ctrl_c_and_with_clean_by_label(tmp_path: Path, how: str) -> None:
    """The veth lives in the lab namespace: Ctrl-C unwinds the lab, and after a SIGKILL `clean` of the run (by its
    label, the run id in the namespace names) deletes the lab namespace; either way the device keeps nothing."""
    if os.geteuid() != 0:
        pytest.skip("needs root: namespaces")
    import signal

    from harness.lab import cleanup

    run, own = labels.new_run_id(), labels.new_run_id()
    ns = labels.resource_name(own, "plaindev")  # the device's namespace is not the lab run's: clean leaves it alone
    netns.create(ns)
    child = None
    try:
        (tmp_path / "plain.toml").write_text(_profile(tmp_path / "plain.toml", ns).read_text().replace('bridge = "br0"\n', ""))
        child = subprocess.Popen([sys.executable, "-c", CHILD, run, str(tmp_path / "plain.toml")], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2])
        assert child.stdout is not None and child.stdout.readline().strip() == "ready", child.stderr.read() if child.stderr else ""
        assert "lab0" in _sh(["ip", "-n", ns, "-o", "link", "show"])
        if how == "ctrl-c":
            child.send_signal(signal.SIGINT)
            child.wait(timeout=60)
        else:
            child.kill()
            child.wait(timeout=60)
            assert "lab0" in _sh(["ip", "-n", ns, "-o", "link", "show"])  # nothing ran on the way out
            cleanup.clean(run=run, say=lambda _: None)
        # the kernel dismantles a deleted namespace asynchronously (its veth goes with it a moment later)
        deadline = time.monotonic() + WAIT
        while "lab0" in _sh(["ip", "-n", ns, "-o", "link", "show"]) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "lab0" not in _sh(["ip", "-n", ns, "-o", "link", "show"])
        assert not [n for n in _sh(["ip", "netns", "list"]).split() if f"ipsi-{run}-" in n and n != ns]
    finally:
        if child is not None and child.poll() is None:
            child.kill()
            child.wait(timeout=30)
        netns.delete(ns)
        cleanup.clean(run=run, say=lambda _: None)
