"""pytest side of the cases: the `ends(...)` marker, the `pair` fixture and its parametrization.

A test that takes `pair` runs once per pair of ends (harness.cases.ends): by default the built-in stack
initiating to each selected peer, each peer initiating to the built-in stack, and each strongSwan with each
Libreswan both ways; `@pytest.mark.ends("builtin>peer")` narrows that (on a test, or on a table row's param:
other kinds are then deselected, not skipped: the case is not declared for them). `@pytest.mark.topology(name)`
picks the lab (default direct; peer-to-peer pairs use its peer_pair counterpart). Peers are pooled per
worker (lab_pool), each pair in the xdist group of its peers. `--evidence all` keeps logs and SA state of
passing cases too (default: on failure only). Each case's record names its matrix column (`peer`; its row is the
collector's case_name, the pair's role in place of its versions), both ends' versions, runtimes and kernels, and
every evidence file (`artifact`).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from harness.cases.ends import BUILTIN, DEFAULT_KINDS, PairSpec, pair_specs
from harness.cases.pair import End, Pair
from harness.lab import fixtures, peering
from harness.report import steps

DEFAULT_TOPOLOGY = "direct"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("ipsec-interop").addoption(
        "--evidence", choices=("failed", "all"), default="failed",
        help="keep each end's log and SA state beside the capture for failed cases only (default) or for all")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ends(*kinds): the pairs of ends a case runs between: builtin>peer, "
                                       "peer>builtin, peer>peer (default: all three)")


def _kinds(marker: Any) -> tuple[str, ...]:
    return tuple(marker.args) if marker else DEFAULT_KINDS


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "pair" not in metafunc.fixturenames or fixtures.explicitly_parametrized(metafunc, "pair"):
        return
    peers, unusable = fixtures.selected_peers(metafunc.config)
    if metafunc.config.getoption("--runtime", "auto") == "external":
        kinds = tuple(k for k in DEFAULT_KINDS if k != "peer>peer")  # one device: only the built-in stack faces it
    else:
        kinds = DEFAULT_KINDS  # narrowed per item in pytest_collection_modifyitems (table rows carry their own)
    topo = metafunc.definition.get_closest_marker("topology")
    specs = pair_specs([p for p in peers if p not in unusable], kinds, topo.args[0] if topo else DEFAULT_TOPOLOGY)
    params = [pytest.param(s, id=s.id, marks=pytest.mark.xdist_group("+".join(s.peers))) for s in specs]
    for p, why in unusable.items():
        params.append(pytest.param(None, id=p or "no-peer", marks=pytest.mark.skip(reason=why)))
    if not params:
        params = [pytest.param(None, id="no-peer", marks=pytest.mark.skip(reason="no peer selected or built"))]
    metafunc.parametrize("pair", params, indirect=True, scope="function")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep, drop = [], []
    for item in items:
        spec = getattr(getattr(item, "callspec", None), "params", {}).get("pair")
        if isinstance(spec, PairSpec) and spec.kind not in _kinds(item.get_closest_marker("ends")):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    _group_by_lab(items)


def _lab_key(item: pytest.Item) -> tuple[str, ...] | None:
    spec = getattr(getattr(item, "callspec", None), "params", {}).get("pair")
    if not isinstance(spec, PairSpec):
        return None
    return (spec.lab_topology, *sorted(f"{node}={name}" for name, node in spec.nodes().items() if name != BUILTIN))


def _group_by_lab(items: list[pytest.Item]) -> None:
    """Order the pair cases by the lab they need (topology and peers), in the slots they hold, others in place:
    the pool keeps one lab per topology and worker, so interleaved peers would boot their guests again and again."""
    slots = [i for i, item in enumerate(items) if _lab_key(item) is not None]
    first: dict[tuple[str, ...], int] = {}
    for i in slots:
        first.setdefault(_lab_key(items[i]), i)  # type: ignore[arg-type]
    ordered = sorted((items[i] for i in slots), key=lambda it: first[_lab_key(it)])  # type: ignore[index]
    for i, item in zip(slots, ordered):
        items[i] = item


def _requirement(item: pytest.Item) -> str:
    m = item.get_closest_marker("rfc")
    if not m:
        return ""
    number, section, level = (list(m.args) + ["", "", ""])[:3]
    return f"RFC {number} s{section} {level}".strip()


def _safe(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", nodeid.replace("::", "__").replace(">", "-to-"))[:180]


@pytest.fixture
def pair(request: pytest.FixtureRequest, lab_pool: fixtures.LabPool):
    """A Pair: the two ends of this case on a pooled lab, captured; evidence and the wire check after it."""
    spec: PairSpec | None = getattr(request, "param", None)
    if spec is None:
        pytest.skip("no peer selected")
    if os.geteuid() != 0:
        pytest.skip("needs root: the lab creates network namespaces and raw sockets")
    nodes = spec.nodes()
    assignment = {node: name for name, node in nodes.items() if name != BUILTIN}
    try:
        env = lab_pool.get(spec.lab_topology, assignment)
    except peering.Unavailable as e:
        pytest.skip(str(e))
    item = request.node
    ends: dict[str, End] = {}
    for name, node in nodes.items():
        if name == BUILTIN:
            ends[name] = End(name, node, env.builtin_end())
        else:
            h = env.peers[node]
            ends[name] = End(name, node, h.adapter, h.node)
    _describe(item, spec, env, nodes)
    out = fixtures.report_dir(request.config)
    directory = out / "captures" / _safe(item.nodeid)
    if env.lab.tester:
        env.lab.tester.drain()
    capture = env.lab.capture(directory)
    p = Pair(spec, env.lab, ends, capture, directory, _requirement(item))
    yield p
    failed = getattr(item, "ipsi_rep_call", None) is not None and item.ipsi_rep_call.failed
    try:
        files = p.finish(failed, request.config.getoption("--evidence") == "all")
    finally:
        if not capture.stopped:
            capture.stop()
        steps.record(item, _steps(p))
        for path in p.evidence.files or list(capture.files.values()):
            item.user_properties.append(("artifact", _relative(path, out)))
        item.user_properties += [(f"case_{k}_s", round(v, 4)) for k, v in p.evidence.timings.items()]
        item.user_properties += [(f"{name}.agent_replies_after_nudge", n) for name, n in p.woken().items()]
    if failed:
        fixtures.attach_files(item, files)


def _steps(p: Pair) -> list[steps.Step]:
    """The case's steps: the built-in end's IKE exchanges of this case (its events, their times on its clock made
    epoch times), then the pair's packet batches and checks (harness.report.steps)."""
    out: list[steps.Step] = []
    for end in p.ends:
        if end.builtin:
            b = end.adapter
            first = p._events_from[end.name]
            events, times = list(b.events[first:]), list(b.event_times[first:])
            to_ms = steps.epoch_ms(b.clock)
            out += steps.exchange_steps(events[:len(times)], [to_ms(t) for t in times], p.initiator.name, p.responder.name,
                                        to_ms)
    return out + p.steps


def _relative(path: Path, out: Path) -> str:
    try:
        return str(path.relative_to(out))
    except ValueError:
        return str(path)


def _describe(item: pytest.Item, spec: PairSpec, env: Any, nodes: dict[str, str]) -> None:
    """The record's column, row, ends and each peer's version, runtime and kernel."""
    props = [("peer", spec.column), ("initiator", spec.initiator),
             ("responder", spec.responder)]
    versions = []
    for name, node in nodes.items():
        if name == BUILTIN:
            continue
        h = env.peers[node]
        versions.append(h.version or name)
        props += [(f"{name}.runtime", h.runtime), (f"{name}.kernel", h.kernel)]
        if len(spec.peers) == 1:
            props += [("runtime", h.runtime), ("kernel", h.kernel)]
    if len(spec.peers) > 1:
        first = env.peers[nodes[spec.peers[0]]]
        props += [("runtime", first.runtime), ("kernel", first.kernel)]
    props.append(("peer_version", " / ".join(versions)))
    item.user_properties += props

