"""A machine a drill marked down is not repaired: plan starts nothing on it, says why, and
repairs it as soon as the mark is gone (or expired)."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

from pgha_operator.core.actions import CreateMachine, StartService, WaitFor
from pgha_operator.core.plan import plan
from pgha_operator.core.services import ServiceState
from pgha_operator.shell.state.marks import clear_down, down_machines, mark_down, mark_path
from tests.unit.test_plan import converged, demo_desired


def crashed(machine: str, down: frozenset[str]):  # noqa: ANN201 - Observed
    desired = demo_desired()
    observed = converged(desired)
    services = {
        key: (ServiceState.FAILED if key[0] == machine else state)
        for key, state in observed.services.items()
    }
    return desired, replace(observed, services=services, down=down)


def test_crashed_machine_marked_down_is_left_down() -> None:
    desired, observed = crashed("node1", frozenset({"node1"}))
    result = plan(desired, observed)
    assert not [a for a in result.actions if isinstance(a, StartService)]
    assert result.actions == (WaitFor("node1 to come back (marked down by a drill or by fencing)"),)
    assert "node1" in result.decision


def test_crashed_machine_without_mark_is_restarted() -> None:
    desired, observed = crashed("node1", frozenset())
    starts = [a for a in plan(desired, observed).actions if isinstance(a, StartService)]
    assert [(a.machine, a.service) for a in starts] == [("node1", "patroni")]


def test_other_machines_are_still_repaired_while_one_is_down() -> None:
    desired, observed = crashed("node1", frozenset({"node1"}))
    services = dict(observed.services)
    services[("etcd2", "etcd")] = ServiceState.FAILED
    result = plan(desired, replace(observed, services=services))
    starts = [(a.machine, a.service) for a in result.actions if isinstance(a, StartService)]
    assert starts == [("etcd2", "etcd")]
    assert isinstance(result.actions[-1], WaitFor)


def test_mark_of_a_machine_outside_the_manifest_changes_nothing() -> None:
    desired = demo_desired()
    observed = replace(converged(desired), down=frozenset({"elsewhere"}))
    assert plan(desired, observed).actions == ()


def test_marks_expire_and_clear(tmp_path: Path) -> None:
    mark_down(tmp_path, "node2", 60, "crash-primary")
    mark_down(tmp_path, "etcd1", 0.01, "kill-etcd-member")
    time.sleep(0.05)
    assert down_machines(tmp_path) == frozenset({"node2"})
    assert down_machines(tmp_path, now=time.time() + 120) == frozenset()
    body = json.loads(mark_path(tmp_path, "node2").read_text())
    assert body["reason"] == "crash-primary"
    clear_down(tmp_path, "node2")
    clear_down(tmp_path, "node2")  # idempotent
    assert down_machines(tmp_path) == frozenset()


def test_no_marks_dir_and_garbage_marks_mean_nothing_is_down(tmp_path: Path) -> None:
    assert down_machines(tmp_path) == frozenset()
    (tmp_path / "down").mkdir()
    (tmp_path / "down" / "node1.json").write_text("{not json")
    (tmp_path / "down" / "node2.json").write_text('{"machine": "node2"}')
    assert down_machines(tmp_path) == frozenset()


def test_a_stopped_machine_marked_down_is_not_booted() -> None:
    # Machine providers list a powered-off machine as absent; creating it boots it.
    desired = demo_desired()
    observed = converged(desired)
    machines = dict(observed.machines)
    machines["node1"] = replace(machines["node1"], exists=False)
    services = {k: v for k, v in observed.services.items() if k[0] != "node1"}
    down = replace(observed, machines=machines, services=services, down=frozenset({"node1"}))
    actions = plan(desired, down).actions
    assert not [a for a in actions if isinstance(a, CreateMachine | StartService)]
    back = plan(desired, replace(down, down=frozenset())).actions
    assert CreateMachine("node1") in back
