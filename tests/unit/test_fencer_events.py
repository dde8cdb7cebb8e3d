"""The fencer acting on a death the provider reports (a pidfd on real processes standing for
the machine's vital ones), and its anti-flap guard keyed to the cluster's health."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
from structlog.testing import capture_logs

from pgha_operator.shell.death_watch import DeathWatch
from pgha_operator.shell.hosts import procfs
from pgha_operator.shell.providers.base import DeathReports
from tests.fakeworld.loop import observe_world
from tests.fakeworld.machines import FakeProvider
from tests.fakeworld.world import FakeWorld
from tests.unit.test_fencer import LEADER_KEY, fencer_for, probe_until_decided
from tests.unit.test_fencer import world as world  # noqa: F401 - the fixture

Spawned = list[subprocess.Popen[bytes]]


class ReportingProvider(FakeProvider, DeathReports):
    """The fake provider, with a real `sleep` standing for each machine's vital process."""

    def __init__(self, world: FakeWorld, spawned: Spawned) -> None:
        super().__init__(world)
        self.spawned = spawned
        self.vital: dict[str, subprocess.Popen[bytes]] = {}

    def vital_processes(self, name: str) -> dict[int, int]:
        proc = self.vital.get(name)
        if proc is None:
            proc = self.vital[name] = subprocess.Popen(["sleep", "60"])
            self.spawned.append(proc)
        start = procfs.proc_starttime(proc.pid)
        return {proc.pid: start} if start is not None and proc.poll() is None else {}

    def crash(self, name: str) -> None:
        """The machine dies: its vital process exits, then the world sees it powered off."""
        self.vital[name].kill()
        self.vital[name].wait()
        self.power_off(name)


@pytest.fixture(autouse=True)
def _logs() -> Iterator[None]:
    with capture_logs():
        yield


@pytest.fixture
def spawned() -> Iterator[Spawned]:
    procs: Spawned = []
    yield procs
    for p in procs:
        p.kill()
        p.wait()


@pytest.fixture
def reporting(world: FakeWorld, spawned: Spawned) -> ReportingProvider:  # noqa: F811
    provider = ReportingProvider(world, spawned)
    world.provider = provider
    return provider


def test_a_watch_reports_once_when_every_vital_process_exited(spawned: Spawned) -> None:
    procs = [subprocess.Popen(["sleep", "60"]) for _ in range(2)]
    spawned.extend(procs)
    watch = DeathWatch("m", {p.pid: procfs.proc_starttime(p.pid) or 0 for p in procs})
    assert watch.armed and not watch.wait(0.05)
    procs[0].kill()
    assert not watch.wait(0.2)  # one of two: not a death
    procs[1].kill()
    started = time.monotonic()
    assert watch.wait(2.0)
    assert time.monotonic() - started < 0.5
    assert not watch.wait(0.01)  # reported once


def test_a_watch_of_a_reused_pid_is_not_armed(spawned: Spawned) -> None:
    proc = subprocess.Popen(["sleep", "60"])
    spawned.append(proc)
    start = procfs.proc_starttime(proc.pid) or 0
    assert not DeathWatch("m", {proc.pid: start + 1}).armed  # another process's start time
    assert not DeathWatch("m", {}).armed


def test_a_reported_death_is_fenced_at_once(
    world: FakeWorld,  # noqa: F811
    reporting: ReportingProvider,
) -> None:
    journal: list[dict] = []
    fencer = fencer_for(world)
    fencer.journal = journal.append
    assert fencer.wait(0.05, threading.Event()) is None  # alive: nothing to report
    assert fencer.watch is not None and fencer.watch.armed  # armed by the waiting thread
    reporting.crash("node1")  # between two waits: its death must not be lost
    started = time.monotonic()
    decision = fencer.wait(2.0, threading.Event())
    assert decision is not None and decision.fence, decision
    assert time.monotonic() - started < 0.5  # not three 200 ms probes
    assert "reported dead by the provider (1 probes failed)" in decision.reason
    assert LEADER_KEY not in world.etcd.keys
    (record,) = journal
    assert record["machine"] == "node1" and record["seenBy"] == "event"
    assert record["seen"] <= record["decided"] <= record["fenced"] <= record["released"]
    assert record["release"] == "leader key released"


def test_a_reported_death_of_a_running_machine_is_not_fenced(
    world: FakeWorld,  # noqa: F811
    reporting: ReportingProvider,
) -> None:
    """The vital processes exited but the provider still sees the machine running (and
    Patroni answers): every guard still holds, the key stays."""
    fencer = fencer_for(world)
    assert fencer.wait(0.01, threading.Event()) is None  # armed
    reporting.vital["node1"].kill()
    assert fencer.wait(2.0, threading.Event()) is None  # it still answers as primary
    assert world.etcd.keys[LEADER_KEY] == "node1" and world.machines["node1"].powered


def test_after_a_fence_the_guard_holds_until_a_primary_answered(
    world: FakeWorld,  # noqa: F811
) -> None:
    """The anti-flap guard keys on what the operator saw: after a fence it refuses another
    (unhealthy_since_fence set) until a primary answered its probes, however soon."""
    fencer = fencer_for(world)
    assert fencer.view().unhealthy_since_fence is None  # no fence yet
    world.provider.freeze("node1")
    assert probe_until_decided(fencer).fence
    world.tick()  # a replica takes the released key at once
    desired = fencer.desired
    fencer.update(desired, observe_world(world, desired))
    assert fencer.leader in ("node2", "node3")
    assert fencer.view().unhealthy_since_fence is not None
    assert fencer.probe() is None  # the new primary answers
    assert fencer.view().unhealthy_since_fence is None


def test_a_machine_the_provider_sees_frozen_is_fenced_after_one_failed_probe(
    world: FakeWorld,  # noqa: F811
) -> None:
    journal: list[dict] = []
    fencer = fencer_for(world)
    fencer.journal = journal.append
    world.provider.freeze("node1")
    decision = fencer.probe()
    assert decision is not None and decision.fence, decision
    assert "reported frozen by the provider (1 probes failed)" in decision.reason
    assert journal[0]["seenBy"] == "frozen"


def test_a_freeze_that_ends_within_the_confirmation_is_not_fenced(
    world: FakeWorld,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pause shorter than FROZEN_CONFIRM (seen frozen, then running): no fence yet."""
    fencer = fencer_for(world)
    world.provider.freeze("node1")
    real_sleep = time.sleep

    def thaw_meanwhile(seconds: float) -> None:
        world.provider.thaw("node1")
        real_sleep(0)

    monkeypatch.setattr(time, "sleep", thaw_meanwhile)
    fencer._is_primary = lambda node: False  # type: ignore[method-assign]  # probe failed
    assert fencer.probe() is None
    assert world.machines["node1"].powered and world.etcd.keys[LEADER_KEY] == "node1"


def test_a_frozen_primary_leaves_the_load_balancers_before_its_power_off(
    world: FakeWorld,  # noqa: F811
) -> None:
    """Its clients' sessions break at the power-off and reconnect at once: HAProxy must
    not list the dead server UP then (it would hold them in its connect retries)."""
    steps: list[str] = []
    fencer = fencer_for(world)
    power_off = world.provider.power_off

    def recorded_power_off(name: str) -> None:
        steps.append(f"power off {name}")
        power_off(name)

    world.provider.power_off = recorded_power_off  # type: ignore[method-assign]
    fencer.out_of_load_balancers = lambda node: steps.append(f"out {node}")  # type: ignore[method-assign]
    world.provider.freeze("node1")
    decision = fencer.probe()
    assert decision is not None and decision.fence, decision
    assert steps[:2] == ["out node1", "power off node1"]
