"""execute(): each action's effect on the fake world, and the preconditions it re-checks."""

from __future__ import annotations

import json

import pytest

from pgha_operator.core.actions import (
    Action,
    AddEtcdMember,
    CreateMachine,
    CreateRole,
    DestroyMachine,
    PatchPatroniConfig,
    PromoteEtcdMember,
    Reinitialize,
    ReloadService,
    RemoveEtcdMember,
    RemovePath,
    RestartPostgres,
    RestartService,
    StartService,
    StopService,
    Switchover,
    WaitFor,
    WriteFile,
)
from pgha_operator.core.render import ADMIN_USER
from pgha_operator.core.services import ServiceState
from pgha_operator.shell.clients import ComponentError
from pgha_operator.shell.execute import Outcome, execute
from tests.fakeworld.loop import env_for, observe_world
from tests.fakeworld.world import FakeWorld
from tests.unit.test_convergence import converged_demo, desired_for

DESIRED = desired_for("demo")


@pytest.fixture
def world() -> FakeWorld:
    return converged_demo().copy()


def run(world: FakeWorld, *actions: Action) -> Outcome:
    return execute(list(actions), env_for(world, DESIRED))


def config(world: FakeWorld, machine: str, service: str) -> str:
    return next(
        f.path
        for f in DESIRED.files
        if f.machine == machine and f.service == service and not f.certificate
    )


def test_create_machine_and_destroy_it() -> None:
    world = FakeWorld.for_cluster(DESIRED.cluster)
    assert run(world, CreateMachine("node1")).error is None
    assert world.machines["node1"].address == DESIRED.topology.address("node1")
    assert run(world, DestroyMachine("node1")).error is None
    assert "node1" not in world.machines


def test_write_file_installs_the_content(world: FakeWorld) -> None:
    path = config(world, "node2", "patroni")
    outcome = run(world, WriteFile("node2", path, "scope: x\n", 0o600, "postgres", "changed"))
    assert outcome.error is None
    assert world.machines["node2"].files[path] == b"scope: x\n"


def test_a_haproxy_config_haproxy_refuses_leaves_the_live_file(world: FakeWorld) -> None:
    path = config(world, "haproxy", "haproxy")
    live = world.machines["haproxy"].files[path]
    outcome = run(world, WriteFile("haproxy", path, "global\n", 0o644, None, "changed"))
    assert "haproxy -c refused" in (outcome.error or "")
    assert world.machines["haproxy"].files[path] == live
    assert path + ".pgha-new" not in world.machines["haproxy"].files  # the candidate is gone


def test_a_yaml_file_its_reader_cannot_parse_is_not_written(world: FakeWorld) -> None:
    """An outcome with the file named, not a YAML exception out of execute (it was)."""
    path = config(world, "node1", "patroni")
    live = world.machines["node1"].files[path]
    outcome = run(world, WriteFile("node1", path, "a: [", 0o600, None, "changed"))
    assert outcome.done == [] and f"{path}: not valid YAML" in (outcome.error or "")
    assert world.machines["node1"].files[path] == live


def test_start_of_a_running_service_is_a_no_op(world: FakeWorld) -> None:
    before = world.machines["etcd1"].procs["etcd"]
    assert run(world, StartService("etcd1", "etcd")).error is None
    assert world.machines["etcd1"].procs["etcd"] is before  # not restarted


def test_stop_then_start(world: FakeWorld) -> None:
    assert run(world, StopService("haproxy", "haproxy", "test")).error is None
    assert "haproxy" not in world.machines["haproxy"].procs
    assert run(world, StartService("haproxy", "haproxy")).error is None
    assert world.machines["haproxy"].procs["haproxy"].state == ServiceState.RUNNING


def test_reload_rereads_the_file_and_skips_a_stopped_service(world: FakeWorld) -> None:
    path = config(world, "haproxy", "haproxy")
    m = world.machines["haproxy"]
    m.files[path] += b"# new\n"
    assert run(world, ReloadService("haproxy", "haproxy", "changed")).error is None
    assert m.procs["haproxy"].loaded == m.files[path]
    run(world, StopService("haproxy", "haproxy", "test"))
    assert run(world, ReloadService("haproxy", "haproxy", "changed")).error is None
    assert "haproxy" not in m.procs  # a reload never starts a stopped service


def test_restart_reads_the_new_config(world: FakeWorld) -> None:
    path = config(world, "etcd2", "etcd")
    m = world.machines["etcd2"]
    m.files[path] += b"# new\n"
    assert run(world, RestartService("etcd2", "etcd", "changed")).error is None
    assert m.procs["etcd"].loaded == m.files[path]


def test_remove_path_removes_everything_under_it(world: FakeWorld) -> None:
    data = DESIRED.etcd_data_dirs["etcd3"]
    assert any(p.startswith(data) for p in world.machines["etcd3"].files)
    assert run(world, RemovePath("etcd3", data, "test")).error is None
    assert not any(p.startswith(data) for p in world.machines["etcd3"].files)


def test_etcd_membership_add_promote_remove(world: FakeWorld) -> None:
    peer = "http://127.0.10.104:2380"
    assert run(world, AddEtcdMember("etcd4", peer)).error is None
    learner = next(m for m in world.etcd.members if m.peer_url == peer)
    assert learner.learner and not learner.name
    # etcd allows one learner at a time: the second add is refused with 412.
    outcome = run(world, AddEtcdMember("etcd5", "http://127.0.10.105:2380"))
    assert isinstance(outcome.exception, ComponentError) and outcome.exception.status == 412
    # A learner that never started is not in sync: promotion is refused, not forced.
    outcome = run(world, PromoteEtcdMember("etcd4", learner.id))
    assert isinstance(outcome.exception, ComponentError) and learner.learner
    assert run(world, RemoveEtcdMember("etcd4", learner.id, "test")).error is None
    assert learner not in world.etcd.members


def test_membership_changes_are_refused_without_quorum(world: FakeWorld) -> None:
    for name in ("etcd1", "etcd2"):
        world.machines[name].procs["etcd"].state = ServiceState.FAILED
    member = world.etcd.members[2]
    outcome = run(world, RemoveEtcdMember("etcd3", member.id, "test"))
    assert isinstance(outcome.exception, ComponentError)
    assert member in world.etcd.members


def test_patch_config_goes_to_the_leader_named_in_the_action(world: FakeWorld) -> None:
    patch = json.dumps({"postgresql": {"parameters": {"max_connections": 300}}})
    outcome = run(world, PatchPatroniConfig("node1", patch, ("x",)))
    assert outcome.error is None
    assert world.patroni.config["postgresql"]["parameters"]["max_connections"] == 300
    world.tick()
    assert world.patroni.member_keys["node2"][0]["pending_restart"] is True


def test_restart_postgres_applies_pending_parameters(world: FakeWorld) -> None:
    world.patroni.config["postgresql"]["parameters"]["max_connections"] = 300
    world.tick()
    assert run(world, RestartPostgres("node2", "test")).error is None
    world.tick()
    world.tick()
    assert "pending_restart" not in world.patroni.member_keys["node2"][0]
    assert world.patroni.member_keys["node1"][0]["pending_restart"] is True


def test_reinitialize_refuses_the_leader_and_clones_a_replica(world: FakeWorld) -> None:
    outcome = run(world, Reinitialize("node1", "test"))
    assert isinstance(outcome.exception, ComponentError) and outcome.exception.status == 503
    assert run(world, Reinitialize("node2", "test")).error is None
    node = world.patroni.node("node2")
    assert node is not None and node.state == "creating replica"


def test_switchover_hands_the_leader_key_over(world: FakeWorld) -> None:
    replica = next(n for _, n in world.patroni.nodes() if n.name != "node1")
    replica.lag = 0
    assert run(world, Switchover("node1", replica.name, "test")).error is None
    assert world.patroni.leader == replica.name
    assert world.true_primaries() == [replica.name]


def test_switchover_from_a_node_that_is_not_the_leader_is_refused(world: FakeWorld) -> None:
    outcome = run(world, Switchover("node2", "node3", "test"))
    assert isinstance(outcome.exception, ComponentError) and outcome.exception.status == 412
    assert world.patroni.leader == "node1"


def test_create_role_once(world: FakeWorld) -> None:
    world.patroni.roles.discard(ADMIN_USER)
    leader = observe_world(world, DESIRED).patroni.leader
    assert leader is not None
    action = CreateRole(ADMIN_USER, leader.host, leader.port)
    assert run(world, action, action).error is None
    assert ADMIN_USER in world.patroni.roles


def test_create_role_on_a_replica_is_refused(world: FakeWorld) -> None:
    world.patroni.roles.discard(ADMIN_USER)
    replica = next(m for m in observe_world(world, DESIRED).patroni.members if m.name == "node2")
    outcome = run(world, CreateRole(ADMIN_USER, replica.host, replica.port))
    assert isinstance(outcome.exception, ComponentError)
    assert ADMIN_USER not in world.patroni.roles


def test_execute_stops_at_the_first_failure(world: FakeWorld) -> None:
    outcome = run(
        world,
        Reinitialize("node1", "refused: the leader"),
        StopService("haproxy", "haproxy", "never reached"),
    )
    assert outcome.done == [] and outcome.error is not None
    assert "haproxy" in world.machines["haproxy"].procs


def test_execute_stops_after_a_barrier(world: FakeWorld) -> None:
    outcome = run(world, WaitFor("something"), StopService("haproxy", "haproxy", "after"))
    assert outcome.done == [WaitFor("something")]
    assert "haproxy" in world.machines["haproxy"].procs


def test_ports_of_a_leaving_machine_are_its_own(world: FakeWorld) -> None:
    """The plan starts etcd on a leaving voter; the local provider's port check must find
    that machine's address (it raised KeyError: the machine is not in the topology)."""
    from pgha_operator.shell.execute import service_ports

    env = env_for(world, desired_for("etcd-2"))  # etcd2 and etcd3 are leaving
    address = world.machines["etcd2"].address
    assert service_ports(env, "etcd2", "etcd") == [(address, 2379), (address, 2380)]


def test_an_etcd_restart_is_refused_while_a_voter_is_down(world: FakeWorld) -> None:
    """The plan saw every voter healthy; one died since. Restarting another now would take
    the quorum down: execute asks etcd again, right before."""
    world.machines["etcd3"].procs["etcd"].state = ServiceState.FAILED
    before = world.machines["etcd2"].procs["etcd"]
    outcome = run(world, RestartService("etcd2", "etcd", "changed"))
    assert "etcd3" in (outcome.error or "") and outcome.done == []
    assert world.machines["etcd2"].procs["etcd"] is before  # not restarted


def test_an_unhealthy_etcd_member_may_still_be_restarted_itself(world: FakeWorld) -> None:
    """Only the other voters count: restarting the one that is down takes nothing away."""
    world.machines["etcd2"].procs["etcd"].state = ServiceState.FAILED
    outcome = run(world, RestartService("etcd2", "etcd", "changed"))
    assert outcome.error is None and len(outcome.done) == 1
