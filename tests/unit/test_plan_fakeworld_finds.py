"""Plan bugs the fake world found (test_convergence.py), each pinned here as a plain table.

1. Scaling etcd from 3 members to 1 while the one that stays was down destroyed the two
   leaving machines, both still etcd voters, because an unreachable etcd lists no members.
   A machine leaves only once etcd and Patroni can say that it is no longer theirs.
2. Reloads came after *all* writes: when a later write failed, a file already written was
   never reloaded (the next cycle sees it current), and its service ran the old config.
   Each reload now follows its own file.
3.-9. below, at their tests.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from pgha_operator.core.actions import (
    DestroyMachine,
    PromoteEtcdMember,
    ReloadService,
    RemovePath,
    RestartService,
    StartEtcdLearner,
    StartService,
    Switchover,
    WaitFor,
    WriteFile,
)
from pgha_operator.core.facts.observed import Observed
from pgha_operator.core.facts.types import EtcdFacts, PatroniFacts
from pgha_operator.core.plan import Plan, plan
from pgha_operator.core.plan.patroni import switchover_candidate
from pgha_operator.core.services import ServiceState
from pgha_operator.shell.execute import execute
from tests.fakeworld.drift import Drift, manifest
from tests.fakeworld.faults import Faults
from tests.fakeworld.loop import converge, env_for, observe_world, run_cycle
from tests.fakeworld.safety import Guard
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
    configs = [f for f in desired.files if f.service == "patroni" and not f.certificate][:2]
    files = {**observed.files, **{(f.machine, f.path): "edited" for f in configs}}
    actions = plan(desired, replace(observed, files=files)).actions
    # Each file with the reload pending, then its reload, which writes it as rendered.
    assert [(type(a), a.machine) for a in actions] == [
        (WriteFile, configs[0].machine),
        (ReloadService, configs[0].machine),
        (WriteFile, configs[1].machine),
        (ReloadService, configs[1].machine),
    ]
    reloads = [a for a in actions if isinstance(a, ReloadService)]
    assert [[w.path for w in r.then_write] for r in reloads] == [[f.path] for f in configs]


def test_a_failed_write_strands_no_written_file_in_the_fake_world() -> None:
    """A fourth node changes every patroni.yml (pg_hba); node1's is written, node2's write
    fails: node1 must still be reloaded."""
    world = converged_demo().copy()
    failing = "write: write node2:/etc/pgha/demo/patroni.yml"
    world.faults = Faults(fail_once=[failing])
    converge(world, desired_for("postgres+1"), 30)
    assert world.faults.injected == [failing]
    assert world.stale_configs() == []


# 3. Scaling etcd down while a leaving member was down waited forever for a quorum that only
#    that member could give: its etcd is started again until the membership step removes it.
def test_a_leaving_etcd_voter_that_is_down_is_started_again() -> None:
    desired, observed = _scaled_down_with()
    services = {**observed.services, ("etcd2", "etcd"): ServiceState.FAILED}
    services[("etcd1", "etcd")] = ServiceState.FAILED
    services[("etcd3", "etcd")] = ServiceState.RUNNING
    etcd = replace(observed.etcd, healthy=frozenset({"etcd3"}))
    actions = plan(desired, replace(observed, services=services, etcd=etcd)).actions
    starts = [(a.machine, a.service) for a in actions if isinstance(a, StartService)]
    assert starts == [("etcd1", "etcd"), ("etcd2", "etcd")]
    assert not [a for a in actions if isinstance(a, DestroyMachine)]


# 4. A switchover (before restarting the primary's Patroni) needs the DCS; planned without
#    an etcd quorum it failed every cycle, first in the plan, so the etcd starts after it
#    never ran.
def test_no_switchover_without_an_etcd_quorum_and_etcd_is_started() -> None:
    desired = FakeWorld.for_cluster(manifest()).desired()
    observed = converged(desired)
    definition = next(f for f in desired.files if f.machine == "node1" and f.defines == "patroni")
    files = {**observed.files, (definition.machine, definition.path): "old"}
    services = {**observed.services, ("etcd1", "etcd"): ServiceState.FAILED}
    services[("etcd2", "etcd")] = ServiceState.FAILED
    etcd = replace(observed.etcd, healthy=frozenset({"etcd3"}))
    actions = plan(desired, replace(observed, files=files, services=services, etcd=etcd)).actions
    assert not [a for a in actions if isinstance(a, Switchover | RestartService)]
    assert [a.machine for a in actions if isinstance(a, StartService)] == ["etcd1", "etcd2"]


def test_a_leaving_primary_waits_for_an_etcd_quorum_before_the_switchover() -> None:
    before = FakeWorld.for_cluster(manifest(postgres=3)).desired()
    desired = FakeWorld.for_cluster(manifest(postgres=2)).desired()
    observed = converged(before)
    leader = observed.patroni.members[0]
    members = tuple(
        replace(
            m,
            role="primary" if m.name == "node3" else "replica",
            state="running" if m.name == "node3" else "streaming",
        )
        for m in observed.patroni.members
    )
    assert leader.name == "node1"
    patroni = replace(observed.patroni, members=members, primaries=frozenset({"node3"}))
    etcd = replace(observed.etcd, healthy=frozenset({"etcd3"}))
    actions = plan(desired, replace(observed, patroni=patroni, etcd=etcd)).actions
    assert not [a for a in actions if isinstance(a, Switchover)]
    observed_ok = replace(observed, patroni=patroni)
    assert any(isinstance(a, Switchover) for a in plan(desired, observed_ok).actions)


# 5. A stopped machine (nspawn, vagrant: listed, not running) that left the manifest was
#    never destroyed.
def test_a_stopped_machine_that_left_is_destroyed() -> None:
    desired, observed = _scaled_down_with()
    machines = {**observed.machines, "etcd2": replace(observed.machines["etcd2"], exists=False)}
    others = tuple(m for m in observed.etcd.members if m.name not in ("etcd2", "etcd3"))
    etcd = replace(observed.etcd, members=others)
    actions = plan(desired, replace(observed, machines=machines, etcd=etcd)).actions
    assert DestroyMachine("etcd2") in actions


# 6. A learner added while its machine was down kept the data of the member it was before:
#    etcd started as that removed member and exited, every cycle.
def test_a_learner_with_stale_data_starts_empty() -> None:
    desired = FakeWorld.for_cluster(manifest()).desired()
    observed = converged(desired)
    members = tuple(
        replace(m, name="", client_urls=(), is_learner=True, id="99") if m.name == "etcd1" else m
        for m in observed.etcd.members
    )
    services = {**observed.services, ("etcd1", "etcd"): ServiceState.FAILED}
    observed = replace(
        observed,
        etcd=replace(observed.etcd, members=members),
        services=services,
        etcd_data={"etcd1": True},
    )
    actions = plan(desired, observed).actions
    kinds = [type(a) for a in actions]
    assert kinds.index(RemovePath) < kinds.index(StartEtcdLearner)
    assert next(a for a in actions if isinstance(a, RemovePath)).machine == "etcd1"


# 7. The operator asked only the manifest's etcd members: scaling 3 -> 1 while the one
#    that stays had lost its data, it saw "etcd unreachable" although the leaving two held
#    a quorum, and could not remove the lost member through them either.
def test_etcd_scaled_down_to_a_member_that_lost_its_data_converges() -> None:
    world = converged_demo().copy()
    Drift("wipe_etcd_data", "etcd1").apply(world)
    desired = desired_for("etcd-2")
    converge(world, desired, 40)
    assert [m.name for m in world.etcd.members] == ["etcd1"]
    assert sorted(world.machines) == sorted(m.name for m in desired.topology.machines)


# 8. A learner's promotion planned without an etcd quorum failed every cycle ("no leader"),
#    first in the plan, so the starts of the dead voters after it never ran.
def test_no_promotion_without_a_quorum_and_the_dead_voters_start() -> None:
    desired = FakeWorld.for_cluster(manifest(etcd=5)).desired()
    observed = converged(FakeWorld.for_cluster(manifest(etcd=3)).desired())
    learner = replace(
        observed.etcd.members[0],
        id="44",
        name="etcd4",
        peer_urls=(desired.topology.etcd_peer_url("etcd4"),),
        is_learner=True,
    )
    etcd = replace(
        observed.etcd,
        members=(*observed.etcd.members, learner),
        healthy=frozenset({"etcd3", "etcd4"}),
    )
    services = {**observed.services, ("etcd4", "etcd"): ServiceState.RUNNING}
    services[("etcd1", "etcd")] = ServiceState.FAILED
    services[("etcd2", "etcd")] = ServiceState.FAILED
    actions = plan(desired, replace(observed, etcd=etcd, services=services)).actions
    assert not [a for a in actions if isinstance(a, PromoteEtcdMember)]
    starts = [a.machine for a in actions if isinstance(a, StartService) and a.service == "etcd"]
    assert starts[:2] == ["etcd1", "etcd2"]


# 9. A changed Patroni definition restarted the primary at once when no replica of the
#    manifest could take over (the one streaming was leaving, the other was down), where
#    the rolling restart waits: a write outage that waiting a cycle avoids.
def test_the_primary_waits_for_a_replica_before_its_patroni_restarts() -> None:
    desired = FakeWorld.for_cluster(manifest(postgres=2)).desired()
    observed = converged(FakeWorld.for_cluster(manifest(postgres=3)).desired())
    definition = next(f for f in desired.files if f.machine == "node1" and f.defines == "patroni")
    files = {**observed.files, (definition.machine, definition.path): "old"}
    services = {**observed.services, ("node2", "patroni"): ServiceState.FAILED}
    members = tuple(
        replace(m, state="stopped", lag_bytes=None) if m.name == "node2" else m
        for m in observed.patroni.members
    )
    patroni = replace(observed.patroni, members=members)
    observed = replace(observed, files=files, services=services, patroni=patroni)
    actions = plan(desired, observed).actions
    assert not [a for a in actions if isinstance(a, RestartService | Switchover)]
    assert any(isinstance(a, WaitFor) and "take over" in a.what for a in actions)
    assert StartService("node2", "patroni") in actions


def test_a_single_node_restarts_its_patroni_without_a_replica() -> None:
    desired = FakeWorld.for_cluster(manifest(postgres=1)).desired()
    observed = converged(desired)
    definition = next(f for f in desired.files if f.machine == "node1" and f.defines == "patroni")
    files = {**observed.files, (definition.machine, definition.path): "old"}
    actions = plan(desired, replace(observed, files=files)).actions
    restart = next(a for a in actions if isinstance(a, RestartService))
    assert (restart.machine, restart.service, restart.reason) == (
        "node1",
        "patroni",
        "its definition changed",
    )


# 10. A lost restart: the operator died between a held write (a file whose reader must
#     restart) and that restart. The next cycle saw the file current and never restarted:
#     the service ran its old config for good. The file is now written with a pending mark
#     until the restart is done (the restart writes it as rendered), as for reloads.
def _running_an_older(world: FakeWorld, machine: str, service: str, path: str) -> None:
    """As after a manifest change: the service runs what the file said before."""
    m = world.machines[machine]
    old = m.files[path] + b"# before the manifest changed\n"
    m.files[path] = old
    proc = m.procs[service]
    if path.endswith(".json"):
        proc.definition = old
    else:
        proc.loaded = old


def _replica(world: FakeWorld) -> str:
    return next(n.name for _, n in world.patroni.nodes() if n.name != world.patroni.leader)


@pytest.mark.parametrize("what", ["etcd config", "patroni definition"])
def test_a_restart_lost_after_its_write_is_planned_again(what: str) -> None:
    world = converged_demo().copy()
    desired = desired_for("demo")
    if what == "etcd config":
        machine, service = "etcd2", "etcd"
        path = next(
            f.path
            for f in desired.files
            if f.machine == machine and f.service == service and not f.certificate
        )
    else:
        machine, service = _replica(world), "patroni"
        path = f"{world.layout.services_dir}/patroni.json"
    _running_an_older(world, machine, service, path)
    actions = plan(desired, observe_world(world, desired)).actions
    restart = next(a for a in actions if isinstance(a, RestartService))
    assert (restart.machine, restart.service) == (machine, service)
    # The operator dies right before the restart: everything before it was done.
    execute(actions[: actions.index(restart)], env_for(world, desired))
    run = converge(world, desired, 20)
    assert world.stale_configs() == []
    assert any(isinstance(a, RestartService) for c in run.cycles for a in c.outcome.done)


# 11. An etcd member was restarted although a voter died between the observation and the
#     restart (the plan saw every voter healthy): quorum went down for the restart.
#     execute re-checks every voter's health, through the etcd client, right before.
def test_a_voter_dying_before_an_etcd_restart_stops_the_restart() -> None:
    world = converged_demo().copy()
    desired = desired_for("demo")
    path = next(
        f.path
        for f in desired.files
        if f.machine == "etcd2" and f.service == "etcd" and not f.certificate
    )
    _running_an_older(world, "etcd2", "etcd", path)
    guard = Guard()

    def a_voter_dies(w: FakeWorld, observed: Observed, the_plan: Plan) -> None:
        assert any(isinstance(a, RestartService) for a in the_plan.actions)
        Drift("kill", "etcd3", "etcd").apply(w)
        guard.before(w, observed, the_plan)  # the truth as the restart would meet it

    cycle = run_cycle(world, desired, a_voter_dies)
    guard.after(world, cycle)  # Unsafe: "restarted etcd while a voter was down"
    assert "etcd3" in (cycle.outcome.error or "")
    assert world.etcd_quorum()


# 12. A switchover went to a replica whose Patroni had died: its member key still said
#     "streaming" in /cluster (it stays until its TTL), Patroni refused the switchover and
#     the cycle failed. A candidate's Patroni must be seen running.
@pytest.mark.parametrize(
    ("dead", "lag", "candidate"),
    [
        ((), {"node2": 0, "node3": 10}, "node2"),  # least lag first
        (("node2",), {"node2": 0, "node3": 10}, "node3"),  # alive before least lag
        (("node2", "node3"), {"node2": 0, "node3": 0}, None),  # nobody alive to take over
    ],
)
def test_the_switchover_candidate_is_seen_alive(
    dead: tuple[str, ...], lag: dict[str, int], candidate: str | None
) -> None:
    desired = FakeWorld.for_cluster(manifest()).desired()
    observed = converged(desired)
    members = tuple(replace(m, lag_bytes=lag.get(m.name, 0)) for m in observed.patroni.members)
    services = {**observed.services, **{(n, "patroni"): ServiceState.FAILED for n in dead}}
    observed = replace(
        observed, services=services, patroni=replace(observed.patroni, members=members)
    )
    assert switchover_candidate(desired, observed, "node1") == candidate
