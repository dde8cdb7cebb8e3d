"""The operator's Prometheus metrics (shell/metrics.py), recorded by the real loop step and
fencer against the fake world, read back through the exposition text Prometheus scrapes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from pgha_operator.shell.loops import timed_cycle
from pgha_operator.shell.metrics import OperatorMetrics
from pgha_operator.shell.state.scrape_targets import FILE_NAME
from tests.fakeworld.drift import Drift, manifest
from tests.fakeworld.world import FakeWorld
from tests.unit.test_controller_fakeworld import controller_for
from tests.unit.test_fencer import fencer_for, probe_until_decided


def scraped(metrics: OperatorMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the exposition text, parsed as Prometheus would."""
    text = metrics.exposition().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(metrics: OperatorMetrics, name: str, **labels: str) -> float | None:
    return scraped(metrics).get((name, frozenset({"cluster": "demo", **labels}.items())))


@pytest.fixture(autouse=True)
def _logs() -> Iterator[None]:
    with capture_logs():
        yield


def converge(ctl, world: FakeWorld, limit: int = 30) -> None:  # noqa: ANN001
    for _ in range(limit):
        if timed_cycle(ctl).converged:
            return
        world.tick()
    raise AssertionError("the fake world did not converge")


def test_a_bootstrap_is_counted_cycle_by_cycle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = FakeWorld.for_cluster(manifest())
    metrics = OperatorMetrics()
    ctl = controller_for(world, tmp_path, monkeypatch)
    ctl.metrics = metrics.cluster("demo")
    converge(ctl, world)
    cycles = value(metrics, "pgha_cycles_total")
    assert cycles is not None and cycles >= 2 and cycles == ctl.metrics.cycles
    assert value(metrics, "pgha_cycle_duration_seconds_count") == cycles
    assert value(metrics, "pgha_cluster_phase", phase="Converged") == 1
    assert value(metrics, "pgha_cluster_phase", phase="Progressing") == 0
    for condition in ("MachinesReady", "EtcdHealthy", "PatroniConverged", "RoutingCorrect"):
        assert value(metrics, "pgha_cluster_condition", condition=condition) == 1
    created = value(metrics, "pgha_actions_total", action="CreateMachine", outcome="ok")
    assert created == len(world.machines)
    assert value(metrics, "pgha_operator_role", role="leader") == 1
    assert value(metrics, "pgha_operator_role", role="standby") == 0
    assert value(metrics, "pgha_primaries") == 1
    assert value(metrics, "pgha_replica_lag_bytes", member="node2") is not None


def test_a_failed_action_is_counted_as_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = FakeWorld.for_cluster(manifest())
    metrics = OperatorMetrics()
    ctl = controller_for(world, tmp_path, monkeypatch)
    ctl.metrics = metrics.cluster("demo")
    converge(ctl, world)
    Drift("kill", "haproxy", "haproxy").apply(world)
    world.faults.fail_once.append("start_error: start haproxy on haproxy")
    report = timed_cycle(ctl)
    assert report.failed is not None and report.error
    kind = type(report.failed).__name__
    assert value(metrics, "pgha_actions_total", action=kind, outcome="failed") == 1


def test_the_scrape_target_list_names_every_exporter_and_is_written_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = FakeWorld.for_cluster(manifest())
    ctl = controller_for(world, tmp_path, monkeypatch)
    converge(ctl, world)
    path = tmp_path / "state" / FILE_NAME
    groups = json.loads(path.read_text())
    patroni = [g for g in groups if g["labels"]["job"] == "patroni"]
    etcd = [g for g in groups if g["labels"]["job"] == "etcd"]
    haproxy = [g for g in groups if g["labels"]["job"] == "haproxy"]
    assert [g["labels"]["member"] for g in patroni] == ["node1", "node2", "node3"]
    assert len(etcd) == 3
    topo = ctl.topology
    assert patroni[0]["targets"] == [f"{topo.address('node1')}:{topo.rest_api_port}"]
    assert {g["labels"]["__scheme__"] for g in etcd} == {"https"}  # etcd serves TLS only
    rest_scheme = topo.rest_api_url("node1").split("://")[0]
    assert {g["labels"]["__scheme__"] for g in patroni} == {rest_scheme}
    # HAProxy's exporter: the stats port, plain HTTP behind the stats page's basic auth.
    stats_port = ctl.cluster.spec.load_balancer.ports.stats
    assert [g["targets"] for g in haproxy] == [
        [f"{topo.address(lb)}:{stats_port}"] for lb in topo.loadbalancers
    ]
    assert {g["labels"]["__scheme__"] for g in haproxy} == {"http"}
    assert len(groups) == len(patroni) + len(etcd) + len(haproxy)
    assert all(g["labels"]["cluster"] == "demo" for g in groups)
    inode = path.stat().st_ino  # an atomic write replaces the file: a new inode
    ctl.cycle()
    assert path.stat().st_ino == inode


def test_the_scrape_target_list_is_rewritten_when_lost(tmp_path: Path) -> None:
    from pgha_operator.shell.state.scrape_targets import ScrapeTargets

    world = FakeWorld.for_cluster(manifest())
    topo = world.desired().topology
    targets = ScrapeTargets(tmp_path)
    assert targets.write(topo, 7000)
    assert not ScrapeTargets(tmp_path).write(topo, 7000)  # operator restarted: file unchanged
    (tmp_path / FILE_NAME).write_text("[]\n")
    assert ScrapeTargets(tmp_path).write(topo, 7000)


def test_a_change_of_primary_is_counted_once() -> None:
    metrics = OperatorMetrics()
    cm = metrics.cluster("demo")
    for seen in ({"node1"}, {"node1"}, set(), {"node1", "node2"}, {"node2"}, {"node2"}):
        cm._follow_primary(frozenset(seen))
    assert value(metrics, "pgha_primary_changes_total") == 1
    assert cm.primary == "node2"


def test_lag_series_of_a_member_gone_are_removed() -> None:
    metrics = OperatorMetrics()
    cm = metrics.cluster("demo")
    cm._set_lag({"node2": 10, "node3": None})
    assert value(metrics, "pgha_replica_lag_bytes", member="node2") == 10
    assert value(metrics, "pgha_replica_lag_bytes", member="node3") is None
    cm._set_lag({"node3": 5})
    assert value(metrics, "pgha_replica_lag_bytes", member="node2") is None
    assert value(metrics, "pgha_replica_lag_bytes", member="node3") == 5


def test_operators_keep_their_own_registries() -> None:
    one, two = OperatorMetrics(), OperatorMetrics()  # the global registry would refuse this
    one.cluster("demo").set_role("standby")
    two.cluster("demo").set_role("leader")
    assert value(one, "pgha_operator_role", role="standby") == 1
    assert value(two, "pgha_operator_role", role="standby") == 0


@pytest.fixture
def world() -> FakeWorld:
    from tests.unit.test_convergence import converged_demo

    w = converged_demo().copy()
    for _, node in w.patroni.nodes():
        node.lag = 0
    return w


def test_fencing_taken_and_probe_latency_are_recorded(world: FakeWorld) -> None:
    metrics = OperatorMetrics()
    fencer = fencer_for(world)
    fencer.metrics = metrics.cluster("demo")
    assert fencer.probe() is None
    world.provider.power_off("node1")  # dead, no death reported: the probes decide
    assert probe_until_decided(fencer).fence
    assert value(metrics, "pgha_fencing_decisions_total", decision="taken") == 1
    assert value(metrics, "pgha_fencing_decisions_total", decision="refused") == 0
    probes = value(metrics, "pgha_probe_duration_seconds_count")
    assert probes is not None and probes >= 1 + fencer.needed


def test_fencing_refused_and_off_are_told_apart(world: FakeWorld) -> None:
    metrics = OperatorMetrics()
    fencer = fencer_for(world)
    fencer.metrics = metrics.cluster("demo")
    Drift("kill", "node1", "patroni").apply(world)  # PostgreSQL runs on: a guard refuses
    assert not probe_until_decided(fencer).fence
    assert value(metrics, "pgha_fencing_decisions_total", decision="refused") == 1

    other = OperatorMetrics()
    off = fencer_for(world, fencing="off")
    off.metrics = other.cluster("demo")
    assert not probe_until_decided(off).fence
    assert value(other, "pgha_fencing_decisions_total", decision="off") == 1
    assert value(other, "pgha_fencing_decisions_total", decision="refused") == 0


def test_the_role_follows_the_lease_cycle_by_cycle(tmp_path: Path) -> None:
    from tests.unit.test_leadership import KEY, TTL_SECONDS, converged_controller

    world, ctl = converged_controller(tmp_path)
    metrics = OperatorMetrics()
    ctl.metrics = metrics.cluster("demo")
    other = world.etcd.leases.grant(TTL_SECONDS)
    world.etcd.leases.create(KEY, "host-b/pid 7/x", other)
    ctl.stand_by()
    timed_cycle(ctl)
    assert value(metrics, "pgha_operator_role", role="standby") == 1
    assert value(metrics, "pgha_operator_role", role="leader") == 0
    world.etcd.leases.revoke(other)  # the leader died: this operator takes over
    timed_cycle(ctl)
    assert value(metrics, "pgha_operator_role", role="leader") == 1
    assert value(metrics, "pgha_operator_role", role="standby") == 0
