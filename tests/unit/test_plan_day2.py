"""plan(): day-2 changes — scaling, etcd membership, DCS config, rolling restarts."""

from __future__ import annotations

import json
from dataclasses import replace

from pgha_operator.core import topology
from pgha_operator.core.actions import (
    AddEtcdMember,
    DestroyMachine,
    PatchPatroniConfig,
    PromoteEtcdMember,
    RemoveEtcdMember,
    RestartPostgres,
    StartEtcdLearner,
    StopService,
    Switchover,
    WaitFor,
    WriteFile,
)
from pgha_operator.core.desired import PLACEHOLDER_SECRETS, build_desired
from pgha_operator.core.facts.observed import MachineFact
from pgha_operator.core.facts.types import EtcdMember, PatroniMember
from pgha_operator.core.plan import Desired, plan
from pgha_operator.core.render import Binaries
from pgha_operator.core.services import ServiceState
from pgha_operator.core.spec import Cluster, load
from tests.unit.test_plan import converged

DEMO = load(["manifests/demo.yaml"])[0].cluster


def with_spec(**changes: object) -> Cluster:
    data = DEMO.model_dump(by_alias=True, mode="json", exclude_none=True)
    for path, value in changes.items():
        node = data["spec"]
        *parents, leaf = path.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return Cluster.model_validate(data)


def desired_for(cluster: Cluster) -> Desired:
    topo = topology.build(cluster)
    layouts = {m.name: topology.layout(f"/srv/pgha/demo/machines/{m.name}") for m in topo.machines}
    desired, _ = build_desired(
        cluster, layouts, PLACEHOLDER_SECRETS, Binaries(), "postgres", "local"
    )
    return desired


def kinds(actions: tuple) -> list[type]:
    return [type(a) for a in actions]


def test_removing_the_primary_switches_over_first() -> None:
    before = desired_for(DEMO)
    observed = converged(before)  # node1 is the primary
    after = desired_for(with_spec(postgres__instances=2))
    # Shrinking 3 -> 2 drops node3; make node3 the primary to exercise rule 4.
    members = tuple(
        replace(m, role="primary" if m.name == "node3" else "replica",
                state="running" if m.name == "node3" else "streaming")
        for m in observed.patroni.members
    )  # fmt: skip
    observed = replace(observed, patroni=replace(observed.patroni, members=members))
    actions = plan(after, observed).actions
    sw = [a for a in actions if isinstance(a, Switchover)]
    assert sw and sw[0].leader == "node3" and sw[0].candidate in ("node1", "node2")
    assert "switch over node3 ->" in sw[0].describe
    assert not any(isinstance(a, (StopService, DestroyMachine)) for a in actions)
    # HAProxy keeps routing to the primary until it handed over.
    assert not any(getattr(a, "path", "").endswith("haproxy.cfg") for a in actions)


def test_removed_replica_is_stopped_waited_for_then_destroyed() -> None:
    before = desired_for(DEMO)
    after = desired_for(with_spec(postgres__instances=2))
    observed = converged(before)
    assert any(
        isinstance(a, StopService) and a.machine == "node3" for a in plan(after, observed).actions
    )
    stopped = replace(
        observed, services={**observed.services, ("node3", "patroni"): ServiceState.STOPPED}
    )
    assert any(isinstance(a, WaitFor) and "node3" in a.what for a in plan(after, stopped).actions)
    left = replace(
        stopped,
        patroni=replace(
            stopped.patroni, members=tuple(m for m in stopped.patroni.members if m.name != "node3")
        ),
    )
    assert any(
        isinstance(a, DestroyMachine) and a.machine == "node3" for a in plan(after, left).actions
    )


def test_etcd_scale_up_adds_one_learner_then_starts_then_promotes() -> None:
    after = desired_for(with_spec(etcd__members=5))
    observed = converged(desired_for(DEMO))
    observed = replace(
        observed,
        machines={
            **observed.machines,
            "etcd4": MachineFact("etcd4", True),
            "etcd5": MachineFact("etcd5", True),
        },
    )
    actions = plan(after, observed).actions
    adds = [a for a in actions if isinstance(a, AddEtcdMember)]
    assert [a.machine for a in adds] == ["etcd4"]  # one at a time
    topo = after.topology
    learner = EtcdMember("99", "", (topo.etcd_peer_url("etcd4"),), (), is_learner=True)
    joining = replace(
        observed, etcd=replace(observed.etcd, members=(*observed.etcd.members, learner))
    )
    steps = plan(after, joining).actions
    start = [a for a in steps if isinstance(a, StartEtcdLearner)]
    assert len(start) == 1 and "initial-cluster-state: existing" in start[0].content
    # Its certificates are written before it starts (etcd will not start without them);
    # its config comes from the join step only.
    certs = {f.path for f in after.files if f.machine == "etcd4" and f.certificate}
    written = [a for a in steps if isinstance(a, WriteFile) and a.machine == "etcd4"]
    assert certs and certs <= {w.path for w in written}
    assert start[0].path not in {w.path for w in written}
    assert max(steps.index(w) for w in written) < steps.index(start[0])
    assert start[0].content.count("=https://") == 4  # the membership it joins, itself included
    running = replace(
        joining, services={**joining.services, ("etcd4", "etcd"): ServiceState.RUNNING}
    )
    assert any(isinstance(a, PromoteEtcdMember) for a in plan(after, running).actions)


def test_etcd_scale_down_refused_while_a_staying_member_is_down() -> None:
    after = desired_for(with_spec(etcd__members=1))
    observed = converged(desired_for(DEMO))
    # etcd1 stays; a dead leaving member goes first instead (test_plan_etcd_extra.py).
    down = replace(observed, etcd=replace(observed.etcd, healthy=frozenset({"etcd2", "etcd3"})))
    actions = plan(after, down).actions
    assert not any(isinstance(a, RemoveEtcdMember) for a in actions)
    assert any(isinstance(a, WaitFor) and "etcd1" in a.what for a in actions)
    removes = [a for a in plan(after, observed).actions if isinstance(a, RemoveEtcdMember)]
    assert len(removes) == 1


def test_lost_etcd_data_is_replaced_by_remove_then_add() -> None:
    desired = desired_for(DEMO)
    observed = converged(desired)
    lost = replace(
        observed,
        etcd_data={"etcd1": True, "etcd2": False, "etcd3": True},
        services={**observed.services, ("etcd2", "etcd"): ServiceState.FAILED},
        etcd=replace(observed.etcd, healthy=frozenset({"etcd1", "etcd3"})),
    )
    actions = plan(desired, lost).actions
    assert [a.machine for a in actions if isinstance(a, RemoveEtcdMember)] == ["etcd2"]
    assert not any(
        a
        for a in actions
        if getattr(a, "service", None) == "etcd"
        and a.machine == "etcd2"
        and not isinstance(a, RemoveEtcdMember)
    )


def test_parameter_change_is_patched_through_patroni() -> None:
    desired = desired_for(
        with_spec(postgres__parameters={"max_connections": 300, "work_mem": "8MB"})
    )
    observed = converged(desired_for(DEMO))
    old = dict(desired_for(DEMO).dynamic_config)
    observed = replace(observed, patroni=replace(observed.patroni, dynamic_config=old))
    patches = [a for a in plan(desired, observed).actions if isinstance(a, PatchPatroniConfig)]
    assert len(patches) == 1
    body = json.loads(patches[0].patch_json)
    assert body == {"postgresql": {"parameters": {"max_connections": 300, "work_mem": "8MB"}}}
    same = replace(
        observed, patroni=replace(observed.patroni, dynamic_config=dict(desired.dynamic_config))
    )
    assert not any(isinstance(a, PatchPatroniConfig) for a in plan(desired, same).actions)


def test_rolling_restart_replicas_then_switchover_then_old_primary() -> None:
    desired = desired_for(DEMO)
    observed = converged(desired)

    def pending(names: set[str], primary: str = "node1") -> object:
        members = tuple(
            PatroniMember(m.name, m.host, m.port, m.api_url,
                          "primary" if m.name == primary else "replica",
                          "running" if m.name == primary else "streaming",
                          1, 0, m.name in names)
            for m in observed.patroni.members
        )  # fmt: skip
        return replace(observed, patroni=replace(observed.patroni, members=members))

    first = plan(desired, pending({"node1", "node2", "node3"})).actions
    assert kinds(first) == [RestartPostgres] and first[0].machine == "node2"
    second = plan(desired, pending({"node1"})).actions
    assert kinds(second) == [Switchover] and second[0].leader == "node1"
    assert "before restarting node1" in second[0].describe
    third = plan(desired, pending({"node1"}, primary="node2")).actions
    assert kinds(third) == [RestartPostgres] and third[0].machine == "node1"
