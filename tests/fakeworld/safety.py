"""The safety rules (DESIGN §2) as checks on one cycle: what the operator observed, planned and
actually started, against the fake world's truth before and after.

Used as `converge(..., before_execute=guard.before, check=guard.after)`.
"""

from __future__ import annotations

from dataclasses import dataclass

from pgha_operator.core.actions import (
    Action,
    DestroyMachine,
    Reinitialize,
    RemoveEtcdMember,
    RestartPostgres,
    RestartService,
    StopService,
    Switchover,
)
from pgha_operator.core.facts.observed import Observed
from pgha_operator.core.plan import Plan
from tests.fakeworld.loop import Cycle
from tests.fakeworld.world import FakeWorld


class Unsafe(AssertionError):
    pass


@dataclass
class Truth:
    """What the world really was when the cycle's actions began."""

    quorum: bool
    voters: frozenset[str]  # member ids
    voter_peers: frozenset[str]  # their peer URLs
    peer_url: dict[str, str]  # machine -> the etcd peer URL it would have
    serving: frozenset[str]
    patroni_members: frozenset[str]  # member keys in the DCS (/cluster)
    primary: str | None
    healthy_replicas: frozenset[str]  # streaming within maximum_lag_on_failover
    etcd_member_of: dict[str, str]  # machine -> the member id its running etcd serves as
    etcd_procs: dict[str, int]  # machine -> identity of its etcd process (was it restarted?)


def truth(world: FakeWorld) -> Truth:
    model = world.patroni
    leader = model.node(model.leader) if model.leader else None
    return Truth(
        quorum=world.etcd.quorum(),
        voters=frozenset(v.id for v in world.etcd.voters()),
        voter_peers=frozenset(v.peer_url for v in world.etcd.voters()),
        peer_url={
            m.name: f"https://{m.address}:{world.cluster.spec.etcd.peer_port}"
            for m in world.machines.values()
        },
        serving=frozenset(world.etcd.serving_ids()),
        patroni_members=frozenset(model.member_keys),
        primary=leader.name if leader and leader.role == "primary" else None,
        healthy_replicas=frozenset(
            n.name
            for _, n in model.nodes()
            if n.role == "replica" and n.state == "streaming" and n.lag <= model.max_lag()
        ),
        etcd_member_of={
            m.name: p.extra["member"]
            for m in world.machines.values()
            if (p := m.proc("etcd")) is not None and "member" in p.extra
        },
        etcd_procs={m.name: id(p) for m in world.machines.values() if (p := m.proc("etcd"))},
    )


def restarted_etcd(world: FakeWorld, t: Truth, machine: str) -> bool:
    """Whether the etcd that ran on `machine` is gone or replaced (a refused restart is not)."""
    m = world.machines.get(machine)
    p = m.procs.get("etcd") if m else None
    return machine in t.etcd_procs and (p is None or id(p) != t.etcd_procs[machine])


def pg_node_touched(action: Action) -> str | None:
    """The PostgreSQL node an action restarts, stops, wipes or demotes, if any."""
    if isinstance(action, RestartPostgres | Reinitialize):
        return action.machine
    if isinstance(action, RestartService | StopService) and action.service == "patroni":
        return action.machine
    if isinstance(action, Switchover):
        return action.leader
    return None


@dataclass
class Guard:
    """Checks every cycle and raises Unsafe at the first broken rule."""

    before_truth: Truth | None = None
    stale_primaries_allowed: bool = False  # a drift made a node claim primary on purpose
    two_primary_cycles: int = 0  # cycles that observed two primaries (and did nothing)
    checked: int = 0  # cycles checked

    def before(self, world: FakeWorld, observed: Observed, the_plan: Plan) -> None:
        self.before_truth = truth(world)
        if len(observed.patroni.primaries) > 1 and the_plan.actions:
            raise Unsafe(f"two primaries observed, yet the plan acts: {the_plan.decision}")

    def after(self, world: FakeWorld, cycle: Cycle) -> None:
        t = self.before_truth
        assert t is not None
        attempted = cycle.attempted
        if len(cycle.observed.patroni.primaries) > 1:
            self.two_primary_cycles += 1
            if attempted:
                raise Unsafe(f"acted with two primaries: {[a.describe for a in attempted]}")
        touched = {pg_node_touched(a) for a in attempted} - {None}
        if len(touched) > 1:
            raise Unsafe(f"restarted or removed two PostgreSQL nodes in one cycle: {touched}")
        for action in attempted:
            self._check_action(world, cycle, t, action)
        primaries = world.true_primaries()
        if len(primaries) > 1 and not self.stale_primaries_allowed:
            raise Unsafe(f"two primaries in the world: {primaries}")
        self.checked += 1

    def _check_action(self, world: FakeWorld, cycle: Cycle, t: Truth, action: Action) -> None:
        observed = cycle.observed
        if isinstance(action, RemoveEtcdMember):
            if action.member_id in t.voters and len(t.voters) <= 1:
                raise Unsafe(f"removed the last etcd voter: {action.describe}")
            rest = t.voters - {action.member_id}
            if action.member_id in t.voters and len(rest & t.serving) * 2 <= len(rest):
                raise Unsafe(f"removal leaves etcd below quorum: {action.describe}")
        stops_etcd = isinstance(action, StopService) and action.service == "etcd"
        if stops_etcd and t.etcd_member_of.get(action.machine) in t.voters:
            raise Unsafe(f"stopped a voting etcd member: {action.describe}")
        etcd_restart = (
            isinstance(action, RestartService)
            and action.service == "etcd"
            and restarted_etcd(world, t, action.machine)
        )
        if etcd_restart and (not t.quorum or t.serving < t.voters):
            raise Unsafe(f"restarted etcd while a voter was down: {action.describe}")
        destroys = isinstance(action, DestroyMachine)
        if destroys and t.peer_url.get(action.machine) in t.voter_peers:
            raise Unsafe(f"destroyed {action.machine} while it is an etcd voter")
        if isinstance(action, DestroyMachine) and (
            observed.patroni.member(action.machine) or action.machine in t.patroni_members
        ):
            raise Unsafe(f"destroyed {action.machine} while it is in Patroni's /cluster")
        restarts_primary = (
            isinstance(action, RestartPostgres)
            or (isinstance(action, RestartService | StopService) and action.service == "patroni")
        ) and action.machine == t.primary
        if restarts_primary and t.healthy_replicas - {action.machine}:
            raise Unsafe(
                f"{action.describe} on the primary while {sorted(t.healthy_replicas)} could take "
                "over (switch over first)"
            )
        # Patroni refuses a switchover to an unhealthy candidate (the plan may pick one from
        # a stale /cluster); what must never happen is that one succeeds.
        done = action in cycle.outcome.done
        if isinstance(action, Switchover) and done and action.candidate not in t.healthy_replicas:
            raise Unsafe(f"switched over to an unhealthy replica: {action.describe}")
