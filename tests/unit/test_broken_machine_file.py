"""A corrupt machine.json (local and nspawn providers) is a fact about that machine, not an
exception that stops every cycle: the machine is reported with an error naming the file and
what to do, nothing overwrites it, and the other machines are still reconciled."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from pgha_operator.core import topology
from pgha_operator.core.actions import CreateMachine
from pgha_operator.core.conditions import assess, phase
from pgha_operator.core.desired import PLACEHOLDER_SECRETS, build_desired
from pgha_operator.core.facts.observed import MachineFact, Observed
from pgha_operator.core.plan import plan
from pgha_operator.core.render import Binaries
from pgha_operator.core.spec import load
from pgha_operator.shell.providers.base import BrokenMachineFile
from pgha_operator.shell.providers.local import LocalProvider
from pgha_operator.shell.providers.nspawn import NspawnProvider

DEMO = load(["manifests/demo.yaml"])[0].cluster


def local_provider(tmp_path: Path) -> LocalProvider:
    return LocalProvider(tmp_path / "state", None, Binaries())


def write_machine(provider: LocalProvider, name: str, text: str) -> Path:
    path = Path(provider.root(name)) / "machine.json"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"name": "node2", "addr', "not valid JSON"),
        ("", "not valid JSON"),
        ('["node2"]', "not a JSON object"),
        ('{"name": "node2"}', "lacks address"),
    ],
)
def test_local_broken_record_is_a_fact_with_an_error(
    tmp_path: Path, text: str, reason: str
) -> None:
    provider = local_provider(tmp_path)
    write_machine(provider, "node1", json.dumps({"name": "node1", "address": "127.0.0.11"}))
    path = write_machine(provider, "node2", text)
    facts = {f.name: f for f in provider.machines()}
    assert facts["node1"] == MachineFact("node1", True, "127.0.0.11")
    broken = facts["node2"]
    assert not broken.exists and broken.error is not None
    assert str(path) in broken.error and reason in broken.error
    assert "restore it" in broken.error  # and what to do


def test_local_create_refuses_to_overwrite_a_broken_record(tmp_path: Path) -> None:
    provider = local_provider(tmp_path)
    path = write_machine(provider, "node2", "{garbage")
    machine = topology.build(DEMO).machine("node2")
    with pytest.raises(BrokenMachineFile, match=str(path)):
        provider.create(machine)
    assert path.read_text() == "{garbage"


def test_nspawn_broken_record_is_a_fact_with_an_error(tmp_path: Path) -> None:
    cluster = load(["manifests/nspawn.yaml"])[0].cluster
    provider = NspawnProvider(cluster, tmp_path / "state")
    good = provider.machines_dir / "node1"
    good.mkdir(parents=True)
    (good / "machine.json").write_text(
        json.dumps({"name": "node1", "address": "10.231.0.11", "rootfs": "/nowhere"})
    )
    bad = provider.machines_dir / "node2"
    bad.mkdir()
    (bad / "machine.json").write_text("{")
    facts = {f.name: f for f in provider.machines()}
    # node1 is not running here: listed, not up, no error.
    assert facts["node1"] == MachineFact("node1", False, "10.231.0.11")
    assert facts["node2"].error is not None and str(bad / "machine.json") in facts["node2"].error
    with pytest.raises(BrokenMachineFile):
        provider._make_disk(provider.topology.machine("node2"))


def test_a_broken_machine_is_not_made_again_and_the_others_are() -> None:
    topo = topology.build(DEMO)
    layouts = {m.name: topology.layout(f"/srv/demo/{m.name}") for m in topo.machines}
    desired, _ = build_desired(DEMO, layouts, PLACEHOLDER_SECRETS, Binaries(), "postgres", "local")
    error = "/srv/demo/node2/machine.json is not valid JSON (...): restore it"
    observed = Observed(machines={"node2": MachineFact("node2", False, None, error=error)})
    result = plan(desired, observed)
    created = {a.machine for a in result.actions if isinstance(a, CreateMachine)}
    assert created == {m.name for m in topo.machines} - {"node2"}
    conditions = assess(desired, observed)
    machines = next(c for c in conditions if c.type == "MachinesReady")
    assert not machines.status and "node2: " + error in machines.reason
    # Once the rest converged, the cluster stays Degraded (not Failed) until repaired.
    converged_rest = replace(result, actions=())
    assert phase(conditions, converged_rest) == "Degraded"
