"""pytest options and fixtures of the lab (loaded by harness.plugin).

Options: --peer NAME (repeatable; default every built peer), --runtime auto|docker|uml|external,
--profile FILE (external device), --keep-lab (leave labs standing, print how to inspect and clean),
--capture-dir DIR (default: beside --results-json, else reports/), where captures/<test>/ go.

Fixtures:
- `peer`: the peer under test (parametrized over the selected peers, ids = peer names,
  each case in `xdist_group(peer)` so that with `--dist loadgroup` one worker reuses its peer).
- `lab_pool` (session): `pool.get(topology, {node: peer})` -> LabEnv, built once per worker and
  reused (lab namespaces, started peer nodes and their adapters); torn down at session end.
- `lab`: a LabHandle for one test: the pooled LabEnv for the test's topology (marker
  `topology(name)`, default "direct") with `peer` on every peer node, a capture of every segment
  for this test, and keys.json beside it. Reports get runtime, kernel and the artifacts.
  LabHandle: .lab (Lab), .tester, .peer / .peers[node] (adapters), .node(name) (runtime node),
  .keys (append the IpsecSaKeys a test negotiates; the peers' kernel keys are added when the capture
  holds SAs the test did not name), .capture, .require_kernel_ipsec(). On failure each peer's log
  and `ip -s xfrm state/policy` are written beside the capture (and attached to Allure).
- Fixtures that use lab_pool directly add env.report_properties() to item.user_properties.
"""
from __future__ import annotations

import os
import platform
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.errors import LabError
from harness.lab import labels, peering
from harness.lab.capture import Capture
from harness.lab.lab import Lab
from harness.lab.tester import Tester
from harness.lab.topology import Topology, topology as load_topology

RUNTIMES = ("auto", "docker", "uml", "external")
DEFAULT_TOPOLOGY = "direct"


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("ipsec-interop")
    g.addoption("--peer", action="append", default=[], metavar="NAME",
                help="peer to test against (repeatable; default: every built peer)")
    g.addoption("--runtime", choices=RUNTIMES, default="auto",
                help="how peers run: docker, uml (User-Mode Linux), external (a device from --profile), or auto")
    g.addoption("--profile", metavar="FILE", default=None, help="profile file of an external device (--runtime external)")
    g.addoption("--keep-lab", action="store_true", default=False,
                help="leave the labs standing after the session; prints how to inspect and remove them")
    g.addoption("--capture-dir", metavar="DIR", default=None,
                help="where per-test captures go (default: the --results-json directory, else reports/)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "topology(name): the lab topology a test needs (topologies.json; default direct)")
    if config.getoption("--runtime", "auto") == "external" and not config.getoption("--profile", None):
        raise pytest.UsageError("--runtime external needs --profile FILE describing the device")
    # one run id for the whole session: set before xdist starts its workers, which inherit it
    labels.current_run_id()


def report_dir(config: pytest.Config) -> Path:
    """Where artifacts go: --capture-dir, else the --results-json directory, else reports/."""
    explicit = config.getoption("--capture-dir", None)
    if explicit:
        return Path(explicit)
    results = config.getoption("--results-json", None)
    return Path(results).parent if results else Path(config.rootpath, "reports")


def selected_peers(config: pytest.Config) -> tuple[list[str], dict[str, str]]:
    """(peers to test, {peer: reason it cannot run}): --peer values, or every built peer."""
    requested = list(dict.fromkeys(config.getoption("--peer", [])))
    if config.getoption("--runtime", "auto") == "external":
        return requested or [peering.external_peer_name(config.getoption("--profile"))], {}
    built, reason = peering.built_peers()
    if not requested:
        return built, ({} if built else {"": reason})
    unusable = {}
    for p in requested:
        if p in built:
            continue
        if not built:
            unusable[p] = f"peer {p!r}: no image built ({reason})"
            continue
        try:
            peering.resolve_peer(p)
        except peering.Unavailable as e:
            unusable[p] = f"peer {p!r}: {e}"
    return requested, unusable


def explicitly_parametrized(metafunc: pytest.Metafunc, name: str) -> bool:
    """True if the test parametrizes `name` itself (then no fixture-side parametrization)."""
    for m in metafunc.definition.iter_markers("parametrize"):
        names = m.args[0] if m.args else m.kwargs.get("argnames", "")
        names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
        if name in names:
            return True
    return False


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "peer" not in metafunc.fixturenames or explicitly_parametrized(metafunc, "peer"):
        return
    peers, unusable = selected_peers(metafunc.config)
    if not peers:
        reason = unusable.get("", "no peer selected")
        metafunc.parametrize("peer", [pytest.param(None, id="no-peer", marks=pytest.mark.skip(reason=reason))], scope="session")
        return
    params = []
    for p in peers:
        marks = [pytest.mark.xdist_group(p)]
        if p in unusable:
            marks.append(pytest.mark.skip(reason=unusable[p]))
        params.append(pytest.param(p, id=p, marks=marks))
    # session scope: pytest then orders tests by peer, so each peer's lab is built once per worker
    metafunc.parametrize("peer", params, scope="session")


@dataclass
class LabEnv:
    """A built lab with its peers started: reused by every test of the same topology and peers on a worker."""

    lab: Lab
    peers: dict[str, peering.PeerHandle] = field(default_factory=dict)
    build_seconds: float = 0.0
    builtin: Any = None  # the built-in end on this lab's tester, made on first use

    def builtin_end(self) -> Any:
        """The built-in stack as an end (harness.peers.builtin.BuiltinEnd) on this lab's tester."""
        if self.builtin is None:
            from harness.peers.builtin import BuiltinEnd

            assert self.lab.tester is not None
            self.builtin = BuiltinEnd(self.lab.tester)
            self.builtin.start()
        return self.builtin

    def report_properties(self) -> list[tuple[str, str]]:
        """user_properties naming each peer's runtime, kernel and version ("peer" plain, other nodes prefixed)."""
        out = []
        for name, h in self.peers.items():
            prefix = "" if name == "peer" else f"{name}."
            out += [(prefix + "runtime", h.runtime), (prefix + "kernel", h.kernel)]
            if h.version:
                out.append((prefix + "peer_version", h.version))
        return out

    def close(self) -> None:
        """Stop the peers (each by its runtime, by pid/container id), then tear the lab down."""
        errors: list[LabError] = []
        if self.builtin is not None:
            self.builtin.stop()
            self.builtin = None
        for h in self.peers.values():
            try:
                h.stop()
            except LabError as e:
                errors.append(e)
        self.lab.close()
        if errors:
            raise errors[0]


def _healthy(h: peering.PeerHandle) -> bool:
    """The peer's node runs and so does the IKE daemon its adapter started."""
    if not getattr(h.node, "alive", True):
        return False
    check = getattr(h.adapter, "daemon_alive", None)
    try:
        return bool(check()) if check else True
    except LabError:
        return False


class LabPool:
    """Per-worker pool of LabEnvs keyed by topology and peer assignment; closes them all at session end."""

    def __init__(self, runtime: str, profile: str | None, keep: bool) -> None:
        self.runtime, self.profile, self.keep = runtime, profile, keep
        self.envs: dict[tuple[str, tuple[tuple[str, str], ...]], LabEnv] = {}
        self.failed: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}  # unavailable here: skip reasons
        self.broken: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}  # set-up errors

    def get(self, topology: str, assignment: dict[str, str]) -> LabEnv:
        """The LabEnv for topology with assignment {peer node: peer name}; built on first use, then reused.

        Raises peering.Unavailable (a skip reason) when a runtime or image is missing.
        """
        key = (topology, tuple(sorted(assignment.items())))
        if key in self.failed:
            raise peering.Unavailable(self.failed[key])
        if key in self.broken:
            raise LabError(f"lab {topology} with {dict(assignment)}: set-up failed earlier in this session: {self.broken[key]}")
        if key in self.envs:
            env = self.envs[key]
            if all(_healthy(h) for h in env.peers.values()):
                return env
            self.envs.pop(key).close()  # a peer or its daemon died (crash, OOM): rebuild rather than fail every later test
        for other in [k for k in self.envs if k[0] == topology or self.runtime == "external"]:
            # one lab per topology and worker (its namespace names): tests come ordered by peer, so the
            # previous peers' lab is done with; an external device has one wire, so it is on one lab at a time
            self.envs.pop(other).close()
        t0 = time.perf_counter()
        lab = Lab(topology)
        lab.keep = self.keep
        env = LabEnv(lab)
        try:
            lab.build()
            missing = [n.name for n in lab.peers() if n.name not in assignment]
            if missing:
                raise LabError(f"topology {topology!r}: no peer given for node(s) {', '.join(missing)}")
            for node, peer in assignment.items():
                env.peers[node] = peering.start_peer(lab, node, peer, self.runtime, self.profile)
        except peering.Unavailable as e:
            self.failed[key] = str(e)
            env.close()
            raise
        except LabError as e:
            self.broken[key] = str(e)  # later tests fail at once instead of booting the same failure again
            env.close()
            raise
        except BaseException:
            env.close()
            raise
        env.build_seconds = time.perf_counter() - t0
        self.envs[key] = env
        return env

    def close(self) -> None:
        """Tear down every LabEnv (or, with --keep-lab, print how to inspect and remove them)."""
        if self.keep:
            # written to the run's state dir: the terminal summary (in the xdist controller too) prints them
            for env in self.envs.values():
                d = labels.state_dir(env.lab.run)
                d.mkdir(parents=True, exist_ok=True)
                peers = "".join(f"  peer {n}: {h.name} ({h.runtime} node {getattr(h.node, 'name', '?')})\n"
                                for n, h in env.peers.items())
                (d / f"kept-{env.lab.name}.txt").write_text(env.lab.describe() + "\n" + peers)
            return
        errors = []
        for env in self.envs.values():
            try:
                env.close()
            except LabError as e:
                errors.append(e)
        self.envs.clear()
        if errors:
            raise errors[0]


@dataclass
class LabHandle:
    """What a lab test gets: the lab, its tester, the peers' adapters, this test's capture and keys."""

    lab: Lab
    env: LabEnv
    capture: Capture
    directory: Path
    keys: list[Any] = field(default_factory=list)

    @property
    def topology(self) -> Topology:
        """The topology this lab was built from."""
        return self.lab.topology

    @property
    def tester(self) -> Tester:
        """The tester node (sockets in its own namespace)."""
        assert self.lab.tester is not None
        return self.lab.tester

    @property
    def peers(self) -> dict[str, Any]:
        """The peers' adapters by node name."""
        return {n: h.adapter for n, h in self.env.peers.items()}

    @property
    def peer(self) -> Any:
        """The adapter of the single peer (node "peer"); LabError if the topology has several."""
        if "peer" in self.env.peers:
            return self.env.peers["peer"].adapter
        if len(self.env.peers) == 1:
            return next(iter(self.env.peers.values())).adapter
        raise LabError(f"topology {self.topology.name!r} has peers {', '.join(self.env.peers)}: use lab.peers[name]")

    def node(self, name: str) -> Any:
        """The runtime node of a peer (exec, logs, files) by node name."""
        return self.env.peers[name].node

    def require_kernel_ipsec(self) -> None:
        """Skip, saying why, when a peer runs on the host kernel (docker) and the probe found it cannot hold ESP SAs."""
        if any(h.runtime == "docker" for h in self.env.peers.values()):
            from harness.runtime.probe import probe

            found = probe()
            if not found.esp:
                pytest.skip(f"peers run on the host kernel (--runtime docker), which cannot install ESP SAs: {found.detail}")


@pytest.fixture(scope="session")
def lab_pool(request: pytest.FixtureRequest):
    """Session (per worker) pool of labs with started peers; see LabPool.get."""
    cfg = request.config
    pool = LabPool(cfg.getoption("--runtime"), cfg.getoption("--profile"), cfg.getoption("--keep-lab"))
    yield pool
    pool.close()


def _safe(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid.replace("::", "__"))[:180]


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: the lab creates network namespaces and raw sockets")


@pytest.fixture
def lab(request: pytest.FixtureRequest, peer: str | None, lab_pool: LabPool):
    """A LabHandle: the test's topology with `peer` on every peer node, captured per test (see module doc)."""
    _need_root()
    if peer is None:
        pytest.skip("no peer selected")
    marker = request.node.get_closest_marker("topology")
    topology = marker.args[0] if marker else DEFAULT_TOPOLOGY
    t0 = time.perf_counter()
    peer_nodes = [n.name for n in load_topology(topology).of_kind("peer")]
    try:
        env = lab_pool.get(topology, dict.fromkeys(peer_nodes, peer))
    except peering.Unavailable as e:
        pytest.skip(str(e))
    item = request.node
    item.user_properties += env.report_properties()
    out = report_dir(request.config)
    directory = out / "captures" / _safe(item.nodeid)
    if env.lab.tester:
        env.lab.tester.drain()  # nothing a previous test left queued reaches this one
    capture = env.lab.capture(directory)
    handle = LabHandle(env.lab, env, capture, directory)
    setup = time.perf_counter() - t0
    yield handle
    t1 = time.perf_counter()
    capture.stop()
    # the peers' kernel keys are read (50-300 ms per peer) only when the capture holds an SA the test did not name
    peer_keys = []
    if capture.spis - {getattr(k, "spi", None) for k in handle.keys}:
        peer_keys = [k for h in env.peers.values() for k in h.sa_keys()]
    keys, seen = [], set()
    for k in [*handle.keys, *peer_keys]:
        ident = (getattr(k, "protocol", None), getattr(k, "spi", id(k)), getattr(k, "dst", None))
        if ident not in seen:  # the tester's and the peer's view of one SA: write it once
            seen.add(ident)
            keys.append(k)
    files = capture.stop(keys=keys)
    failed = getattr(item, "ipsi_rep_call", None) is not None and item.ipsi_rep_call.failed
    extra = _peer_diagnostics(env, directory) if failed else []
    teardown = time.perf_counter() - t1
    item.user_properties += [("lab_setup_s", round(setup, 4)), ("lab_teardown_s", round(teardown, 4)),
                             ("lab_build_s", round(env.build_seconds, 4))]
    for path in [*files.values(), directory / "keys.json", *extra]:
        if path.exists():
            try:
                item.user_properties.append(("artifact", str(path.relative_to(out))))
            except ValueError:
                item.user_properties.append(("artifact", str(path)))
    if failed:
        _attach(item, files, directory, extra)


def _peer_diagnostics(env: LabEnv, directory: Path) -> list[Path]:
    """Write each peer's daemon log and kernel SA/policy state beside the capture (after a failure)."""
    out = []
    for name, h in env.peers.items():
        for suffix, read in (("log", lambda: h.adapter.logs()),
                             ("xfrm.txt", lambda: "".join(h.node.exec(argv, timeout=10).stdout for argv in (
                                 ["ip", "-s", "xfrm", "state"], ["ip", "-s", "xfrm", "policy"])))):
            path = directory / f"{name}.{suffix}"
            try:
                path.write_text(read())
            except LabError as e:  # a dead guest or an external device: say so in the file
                path.write_text(f"could not read: {e}\n")
            out.append(path)
    return out


def _attach(item: pytest.Item, files: dict[str, Path], directory: Path, extra: list[Path]) -> None:
    """Attach pcaps, keys, peer logs and SA state to the Allure report when allure-pytest is active."""
    attach_files(item, [*files.values(), directory / "keys.json", *extra])


def attach_files(item: pytest.Item, paths: list[Path]) -> None:
    """Attach evidence files to the Allure report (harness.report.attachments: MIME type by suffix, pcaps also as
    text) when allure-pytest is active."""
    if not item.config.pluginmanager.hasplugin("allure_pytest"):
        return
    from harness.report.attachments import attach

    attach(list(paths))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        item.ipsi_rep_call = rep  # type: ignore[attr-defined]


def pytest_runtest_setup(item: pytest.Item) -> None:
    # every report names the kernel the harness itself ran on; lab tests add the peer's runtime and kernel
    item.user_properties.append(("host_kernel", platform.release()))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or not config.getoption("--keep-lab", False):
        return
    kept = sorted(labels.state_dir(labels.current_run_id()).glob("kept-*.txt"))
    if kept:
        terminalreporter.section("labs kept (--keep-lab)")
        for path in kept:
            terminalreporter.write(path.read_text())
