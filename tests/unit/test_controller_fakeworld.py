"""Controller.cycle() against the fake world: the real loop step with its status, decision
and phase, without a process started."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
from pathlib import Path

import pytest

from pgha_operator.shell import controller as controller_module
from pgha_operator.shell.controller import Controller
from pgha_operator.shell.observe import observe
from tests.fakeworld.drift import Drift, manifest
from tests.fakeworld.world import FakeWorld

MANIFEST = """\
apiVersion: pgha/v1
kind: Cluster
metadata: {name: demo}
spec:
  provider: {type: local, network: 127.0.10.0/24}
  profile: fast
  etcd: {members: 3}
  postgres: {version: 15, instances: 3, synchronous: "off"}
  loadBalancer:
    instances: 1
    machines: [{name: haproxy, address: 127.0.10.201}]
    ports: {primary: 5000, replicas: 5001, stats: 7000}
"""


def controller_for(world: FakeWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Controller:
    path = tmp_path / "cluster.yaml"
    path.write_text(MANIFEST)
    state = tmp_path / "state"
    if "clients" in inspect.signature(Controller).parameters:
        return Controller(
            [str(path)], state_dir=state, provider=world.provider, clients=world.clients()
        )
    # Until the controller takes its provider and clients (helper C), route them in here.
    monkeypatch.setattr(controller_module, "make_provider", lambda cluster, state: world.provider)
    monkeypatch.setattr(
        controller_module, "observe", functools.partial(observe, clients=world.clients())
    )
    env = Controller.env
    monkeypatch.setattr(
        Controller,
        "env",
        lambda self, *a, **kw: dataclasses.replace(env(self, *a, **kw), clients=world.clients()),
    )
    return Controller([str(path)], state_dir=state)


def cycles(controller: Controller, world: FakeWorld, n: int) -> list:
    reports = []
    for _ in range(n):
        reports.append(controller.cycle())
        world.tick()
        if reports[-1].converged:
            break
    return reports


def test_a_cycle_from_nothing_bootstraps_until_converged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = FakeWorld.for_cluster(manifest())
    controller = controller_for(world, tmp_path, monkeypatch)
    reports = cycles(controller, world, 30)
    first, last = reports[0], reports[-1]
    assert first.phase == "Progressing"
    assert first.decision.startswith("create machine")
    assert last.converged and last.phase == "Converged" and last.decision == "converged"
    assert len(reports) < 15
    status = json.loads((tmp_path / "state" / "status.json").read_text())
    assert status["phase"] == "Converged"
    assert all(c["status"] for c in status["conditions"])
    assert sorted(world.machines) == sorted(m.name for m in world.desired().topology.machines)


def test_a_cycle_with_two_primaries_acts_on_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = FakeWorld.for_cluster(manifest())
    controller = controller_for(world, tmp_path, monkeypatch)
    assert cycles(controller, world, 30)[-1].converged
    Drift("stale_primary", "node2").apply(world)
    Drift("kill", "haproxy", "haproxy").apply(world)  # something the loop would repair
    report = controller.cycle()
    assert report.phase == "Failed"
    assert report.decision.startswith("TwoPrimaries")
    assert report.plan.actions == ()
    assert world.machines["haproxy"].procs["haproxy"].state == "failed"  # left alone


def test_a_failed_action_is_reported_and_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = FakeWorld.for_cluster(manifest())
    controller = controller_for(world, tmp_path, monkeypatch)
    assert cycles(controller, world, 30)[-1].converged
    Drift("kill", "haproxy", "haproxy").apply(world)
    world.faults.fail_once.append("start_error: start haproxy on haproxy")
    report = controller.cycle()
    assert report.decision.startswith("failed: start haproxy on haproxy")
    assert report.phase == "Progressing" and not report.permanent  # a temporary error
    world.tick()
    reports = cycles(controller, world, 10)
    assert reports[-1].converged
