"""The controller's cycle against stand-ins for observe and execute (no processes): what it
passes in, what it builds once, how errors and locks shape the next cycle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pgha_operator.core.actions import Action, Switchover
from pgha_operator.core.errors import TemporaryError
from pgha_operator.core.facts.observed import Observed
from pgha_operator.core.plan import Plan
from pgha_operator.shell import controller as controller_module
from pgha_operator.shell.controller import Controller
from pgha_operator.shell.execute import Outcome
from pgha_operator.shell.loops import BUSY_SECONDS, next_delay
from pgha_operator.shell.state import StateDir

DEMO = "manifests/demo.yaml"


class World:
    """Records what the controller asks of observe and execute."""

    def __init__(self) -> None:
        self.observed_down: list[frozenset[str]] = []
        self.executed: list[tuple[Action, ...]] = []
        self.outcome = Outcome()
        self.on_observe: Any = None

    def observe(
        self,
        desired: Any,
        provider: Any,
        secrets: Any,
        *,
        down: frozenset[str],
        clients: Any,
        reinits: Any = None,
    ) -> Any:
        self.observed_down.append(down)
        if self.on_observe:
            self.on_observe()
        return Observed(down=down)

    def execute(
        self, actions: tuple[Action, ...], env: Any, progress: Any = None, may_act: Any = None
    ) -> Outcome:
        self.executed.append(tuple(actions))
        return self.outcome


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> World:
    w = World()
    monkeypatch.setattr(controller_module, "observe", w.observe)
    monkeypatch.setattr(controller_module, "execute", w.execute)
    return w


def test_a_temporary_errors_delay_paces_the_next_cycle(tmp_path: Path, world: World) -> None:
    ctl = Controller([DEMO], state_dir=tmp_path / "state")
    world.outcome = Outcome(error="etcd busy", exception=TemporaryError("etcd busy", delay=7.0))
    report = ctl.cycle()
    assert world.executed and report.retry_after == 7.0 and next_delay(report, 2.0) == 7.0
    assert report.phase != "Failed"  # temporary: progress, not failure
    world.outcome = Outcome(error="etcd busy", exception=TemporaryError("etcd busy"))
    report = ctl.cycle()
    assert report.retry_after is None and next_delay(report, 2.0) == BUSY_SECONDS


def test_down_marks_go_into_observe_and_a_new_mark_is_looked_at_again(
    tmp_path: Path, world: World
) -> None:
    state = tmp_path / "state"
    ctl = Controller([DEMO], state_dir=state)
    StateDir(state).mark_down("node2", 60, "drill")
    _, observed = ctl.observe()
    assert world.observed_down == [frozenset({"node2"})] and observed.down == {"node2"}
    # A drill marks node3 while the controller looks: it looks again, with the mark.
    world.observed_down.clear()
    world.on_observe = lambda: StateDir(state).mark_down("node3", 60, "drill")
    _, observed = ctl.observe()
    assert world.observed_down[-1] == {"node2", "node3"} and observed.down == {"node2", "node3"}


def test_the_operator_starts_no_switchover_while_a_manual_one_runs(
    tmp_path: Path, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    ctl = Controller([DEMO], state_dir=state)
    switch = Plan((Switchover("node1", "node2", "node1 leaves"),), "switch over")
    monkeypatch.setattr(controller_module, "plan", lambda d, o: switch)
    manual = StateDir(state)
    manual.switchover_lock.acquire("switchover")
    try:
        report = ctl.cycle()
    finally:
        manual.switchover_lock.release()
    assert world.executed == []
    assert report.decision.startswith("waiting: a switchover by pid")
    ctl.cycle()
    assert world.executed == [switch.actions]
    assert StateDir(state).switchover_lock.holder() is None  # released after executing


def test_desired_is_built_once_per_manifest_and_secrets(
    tmp_path: Path, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds = []
    real = controller_module.build_desired
    monkeypatch.setattr(controller_module, "build_desired", lambda *a: builds.append(1) or real(*a))
    topologies = []
    real_topology = controller_module.topology.build
    monkeypatch.setattr(
        controller_module.topology, "build", lambda c: topologies.append(1) or real_topology(c)
    )
    ctl = Controller([DEMO], state_dir=tmp_path / "state")
    ctl.cycle()
    assert len(builds) == 1
    first = len(topologies)  # the controller's layouts, and build_desired's own
    for _ in range(3):
        ctl.cycle()
    assert len(builds) == 1 and len(topologies) == first
    (tmp_path / "state" / "secrets.yaml").write_text(
        "".join(
            f"{f}: new\n"
            for f in (
                "superuser_password",
                "replication_password",
                "admin_password",
                "rest_password",
            )
        )
    )
    ctl.cycle()
    assert len(builds) == 2 and len(topologies) == first + 1  # build_desired's only
