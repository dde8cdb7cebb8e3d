"""The Fencer (shell/fencer.py) against the fake world: it powers a dead primary's machine
off and releases its leader key only when every guard of fence_decision.decide allows."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from structlog.testing import capture_logs

from pgha_operator.core.fence_decision import FenceDecision
from pgha_operator.core.services import ServiceState
from pgha_operator.shell.fencer import Fencer
from tests.fakeworld.drift import Drift, manifest
from tests.fakeworld.loop import observe_world
from tests.fakeworld.world import FakeWorld
from tests.unit.test_convergence import converged_demo

LEADER_KEY = "/service/demo/leader"


def fencer_for(world: FakeWorld, fencing: str = "auto") -> Fencer:
    desired = world.desired(manifest(fencing=fencing))
    fencer = Fencer(desired, world.provider, world.clients())
    fencer.update(desired, observe_world(world, desired))
    return fencer


def probe_until_decided(fencer: Fencer, limit: int = 10) -> FenceDecision:
    for _ in range(limit):
        decision = fencer.probe()
        if decision is not None:
            return decision
    raise AssertionError("the fencer never decided")


@pytest.fixture(autouse=True)
def _logs() -> Iterator[list[dict[str, object]]]:
    # The fencer logs each decision; structlog may still hold an earlier test's closed stderr.
    with capture_logs() as logs:
        yield logs


@pytest.fixture
def world() -> FakeWorld:
    w = converged_demo().copy()
    for _, node in w.patroni.nodes():
        node.lag = 0  # every replica could take over
    return w


def test_a_live_primary_is_never_fenced(world: FakeWorld) -> None:
    fencer = fencer_for(world)
    assert fencer.leader == "node1"
    assert all(fencer.probe() is None for _ in range(10))
    assert fencer.failures == 0 and world.machines["node1"].powered


def test_a_dead_primary_is_fenced_after_three_failed_probes(world: FakeWorld) -> None:
    """A provider that reports no death: the probes decide (a frozen machine, reported by
    the provider after one failed probe: test_fencer_events.py)."""
    fencer = fencer_for(world)
    world.provider.power_off("node1")
    assert fencer.probe() is None and fencer.holding() == frozenset({"node1"})
    decision = probe_until_decided(fencer)
    assert decision.fence, decision.reason
    assert fencer.failures == 3 and "probes failed (3 probes failed)" in decision.reason
    assert "machine powered off, leader key released" in decision.reason
    assert not world.machines["node1"].powered
    assert LEADER_KEY not in world.etcd.keys
    world.tick()  # Patroni elects at once instead of waiting for the lease
    assert world.patroni.leader in ("node2", "node3")


def test_a_primary_whose_patroni_died_is_not_fenced(world: FakeWorld) -> None:
    fencer = fencer_for(world)
    Drift("kill", "node1", "patroni").apply(world)
    decision = probe_until_decided(fencer)
    assert not decision.fence
    assert "Patroni is restarted instead" in decision.reason
    assert world.machines["node1"].powered
    assert world.etcd.keys[LEADER_KEY] == "node1"


def test_no_fence_without_an_etcd_quorum(world: FakeWorld) -> None:
    fencer = fencer_for(world)
    world.provider.freeze("node1")
    for name in ("etcd1", "etcd2"):
        world.machines[name].procs["etcd"].state = ServiceState.FAILED
    decision = probe_until_decided(fencer)
    assert not decision.fence and "quorum" in decision.reason
    assert world.machines["node1"].powered


def test_no_fence_when_fencing_is_off(world: FakeWorld) -> None:
    fencer = fencer_for(world, fencing="off")
    world.provider.freeze("node1")
    decision = probe_until_decided(fencer)
    assert not decision.fence and "fencing is off" in decision.reason
    assert world.machines["node1"].powered


def test_no_fence_without_a_healthy_replica(world: FakeWorld) -> None:
    for _, node in world.patroni.nodes():
        if node.name != "node1":
            node.lag = 64 << 20  # far behind: no candidate within maximum_lag_on_failover
    world.tick()
    fencer = fencer_for(world)
    world.provider.freeze("node1")
    decision = probe_until_decided(fencer)
    assert not decision.fence and "no healthy replica" in decision.reason
    assert world.machines["node1"].powered
