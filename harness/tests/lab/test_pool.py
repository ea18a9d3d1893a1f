"""The per-worker lab pool: reuse, eviction per topology, dead peers rebuilt, failures remembered."""
from __future__ import annotations

import pytest

from harness.errors import LabError, LabUnavailable
from harness.lab import labels, netns, peering
from harness.lab.fixtures import LabPool

pytestmark = pytest.mark.root


class FakeNode:
    """A peer node that only knows whether it runs."""

    def __init__(self) -> None:
        self.alive, self.stopped = True, 0

    def stop(self) -> None:
        self.alive = False
        self.stopped += 1


@pytest.fixture
def started(monkeypatch):
    calls: list[str] = []

    def start(lab, node, peer, runtime, profile):
        calls.append(peer)
        if peer == "broken":
            raise LabError("guest did not boot")
        if peer == "absent":
            raise LabUnavailable("no image for peer 'absent'")
        return peering.PeerHandle(peer, FakeNode(), object(), "netns", "test-kernel", "1.0")

    monkeypatch.setattr(peering, "start_peer", start)
    return calls


def test_pool_reuses_evicts_rebuilds_and_remembers(started, monkeypatch):
    # A run id of its own: this session's own pooled labs use the same worker index and topologies.
    monkeypatch.setenv(labels.RUN_ENV, labels.new_run_id())
    pool = LabPool("auto", None, keep=False)
    try:
        one = pool.get("direct", {"peer": "one"})
        assert pool.get("direct", {"peer": "one"}) is one and started == ["one"]
        nat = pool.get("nat", {"peer": "one"})
        two = pool.get("direct", {"peer": "two"})
        assert not one.lab.built and two.lab.built, "one direct lab per worker: the previous peer's is closed"
        assert one.peers["peer"].node.stopped == 1 and all(netns.exists(n) for n in nat.lab.namespaces)
        two.peers["peer"].node.alive = False
        assert pool.get("direct", {"peer": "two"}) is not two, "a dead peer's lab is rebuilt"
        for _ in range(2):
            with pytest.raises(LabError, match="guest did not boot|failed earlier"):
                pool.get("direct", {"peer": "broken"})
            with pytest.raises(LabUnavailable, match="no image"):
                pool.get("direct", {"peer": "absent"})
        assert started.count("broken") == 1 and started.count("absent") == 1
        assert ("runtime", "netns") in nat.report_properties()
    finally:
        labs = [e.lab for e in pool.envs.values()]
        pool.close()
    assert not any(netns.exists(n) for lab in labs for n in lab.namespaces)
