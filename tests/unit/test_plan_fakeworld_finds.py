"""Plan bugs the fake world found (test_convergence.py), each pinned here as a plain table.

1. Scaling etcd from 3 members to 1 while the one that stays was down destroyed the two
   leaving machines, both still etcd voters, because an unreachable etcd lists no members.
   A machine leaves only once etcd and Patroni can say that it is no longer theirs.
2. Reloads came after *all* writes: when a later write failed, a file already written was
   never reloaded (the next cycle sees it current), and its service ran the old config.
   Each reload now follows its own file.
"""

from __future__ import annotations

from dataclasses import replace

from pgha_operator.core.actions import DestroyMachine, ReloadService, WaitFor, WriteFile
from pgha_operator.core.facts.types import EtcdFacts, PatroniFacts
from pgha_operator.core.plan import plan
from pgha_operator.core.services import ServiceState
from tests.fakeworld.drift import manifest
from tests.fakeworld.faults import Faults
from tests.fakeworld.loop import converge
from tests.fakeworld.world import FakeWorld
from tests.unit.test_convergence import converged_demo, desired_for
from tests.unit.test_plan import converged


def _scaled_down_with(etcd: EtcdFacts | None = None, patroni: PatroniFacts | None = None):
    before = FakeWorld.for_cluster(manifest(etcd=3)).desired()
    after = FakeWorld.for_cluster(manifest(etcd=1)).desired()
    observed = converged(before)
    # The leaving machines run nothing the plan would stop first.
    services = {k: v for k, v in observed.services.items() if k[0] not in ("etcd2", "etcd3")}
    observed = replace(
        observed,
        services=services,
        etcd=etcd or observed.etcd,
        patroni=patroni or observed.patroni,
    )
    return after, observed


def test_no_machine_is_destroyed_while_etcd_membership_is_unknown() -> None:
    desired, observed = _scaled_down_with(etcd=EtcdFacts(reachable=False, error="refused"))
    actions = plan(desired, observed).actions
    assert not [a for a in actions if isinstance(a, DestroyMachine)]
    assert any(isinstance(a, WaitFor) and "etcd" in a.what for a in actions)


def test_no_machine_is_destroyed_while_patroni_membership_is_unknown() -> None:
    desired, observed = _scaled_down_with(patroni=PatroniFacts(reachable=False, error="refused"))
    observed = replace(observed, etcd=replace(observed.etcd, members=observed.etcd.members[:1]))
    actions = plan(desired, observed).actions
    assert not [a for a in actions if isinstance(a, DestroyMachine)]


def test_a_leaving_machine_that_is_no_member_is_destroyed() -> None:
    desired, observed = _scaled_down_with()
    observed = replace(observed, etcd=replace(observed.etcd, members=observed.etcd.members[:1]))
    assert observed.service("etcd2", "etcd") == ServiceState.STOPPED
    actions = plan(desired, observed).actions
    assert DestroyMachine("etcd2") in actions


def test_each_reload_follows_its_own_file() -> None:
    desired = FakeWorld.for_cluster(manifest()).desired()
    observed = converged(desired)
    configs = [f for f in desired.files if f.service == "patroni"][:2]
    files = {**observed.files, **{(f.machine, f.path): "edited" for f in configs}}
    actions = plan(desired, replace(observed, files=files)).actions
    assert [(type(a), a.machine) for a in actions] == [
        (WriteFile, configs[0].machine),
        (ReloadService, configs[0].machine),
        (WriteFile, configs[1].machine),
        (ReloadService, configs[1].machine),
    ]


def test_a_failed_write_strands_no_written_file_in_the_fake_world() -> None:
    """A fourth node changes every patroni.yml (pg_hba); node1's is written, node2's write
    fails: node1 must still be reloaded."""
    world = converged_demo().copy()
    failing = "write: write node2:/etc/patroni/patroni.yml"
    world.faults = Faults(fail_once=[failing])
    converge(world, desired_for("postgres+1"), 30)
    assert world.faults.injected == [failing]
    assert world.stale_configs() == []
