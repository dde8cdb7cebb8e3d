"""The central property, for real: from an empty world or a drifted one, the real observe ->
plan -> execute loop against the fake world (tests/fakeworld) reaches Converged (an empty
plan and every condition true) in a bounded number of cycles, and never breaks a safety rule
on the way (tests/fakeworld/safety.py), while seeded faults make actions fail or half-apply.
"""

from __future__ import annotations

from functools import cache

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from pgha_operator.core.facts.observed import Observed
from pgha_operator.core.plan import Desired, Plan
from pgha_operator.core.render import ADMIN_USER, APP_DATABASE, APP_USER
from tests.fakeworld import converged_world
from tests.fakeworld.drift import Drift, manifest
from tests.fakeworld.faults import KINDS, Faults
from tests.fakeworld.loop import Cycle, Run, converge, run_cycle
from tests.fakeworld.safety import Guard
from tests.fakeworld.world import FakeWorld

MAX_CYCLES = 60  # a bound, not a target: the demo bootstraps in ~8 cycles without faults
FAULT_CYCLES = 12  # faults strike in the first cycles only; then the loop must recover
VARIANTS = {
    "demo": {},
    "postgres+1": {"postgres": 4},
    "postgres-1": {"postgres": 2},
    "etcd+2": {"etcd": 5},
    "etcd-2": {"etcd": 1},
    "max_connections": {"max_connections": 300},
}
FAULT_RATES = (0.0, 0.05, 0.15)
# Every fault is repaired, the operator dying between a file and its reader's reload or
# restart included (plan._picked_up; test_a_lost_reload_is_repaired and
# test_plan_fakeworld_finds.test_a_restart_lost_after_its_write_is_planned_again).
REPAIRED_FAULTS = frozenset(KINDS)
PROPERTY = settings(
    max_examples=12,
    deadline=None,
    derandomize=True,  # CI runs the same examples every time
    # No shrinking: one example is a whole reconcile run, and the failure message already
    # tells the story of the last cycles.
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow],
)


@cache
def desired_for(variant: str) -> Desired:
    return FakeWorld.for_cluster(manifest(**VARIANTS[variant])).desired()


@cache
def converged_demo() -> FakeWorld:
    """A healthy demo cluster, built once by the operator itself from nothing."""
    world = FakeWorld.for_cluster(manifest(), seed=0)
    converge(world, desired_for("demo"), MAX_CYCLES)
    return world


def reconcile(
    world: FakeWorld,
    desired: Desired,
    guard: Guard | None = None,
    late: tuple[int, list[Drift]] = (0, []),
) -> Run:
    """Cycles until converged. `late`: drifts that strike after that many cycles, while the
    loop works on the change."""
    guard = guard or Guard()
    start = world.time

    def before(w: FakeWorld, observed: Observed, the_plan: Plan) -> None:
        w.faults.active = w.time - start < FAULT_CYCLES
        guard.before(w, observed, the_plan)

    applied: list[Drift] = []

    def strike(w: FakeWorld) -> None:
        for drift in late[1]:
            drift.apply(w)
        applied.extend(late[1])

    def after(w: FakeWorld, cycle: Cycle) -> None:
        guard.after(w, cycle)
        if late[1] and not applied and w.time - start > late[0]:  # before the next observation
            strike(w)

    run = converge(world, desired, MAX_CYCLES, check=after, before_execute=before)
    if late[1]:  # converged before (or just as) they struck: strike, and converge again
        if not applied:
            strike(world)
        run = converge(world, desired, MAX_CYCLES, check=guard.after, before_execute=before)
    return run


def assert_truly_converged(world: FakeWorld, desired: Desired) -> None:
    """Converged as the operator sees it must be converged in the world too."""
    topo = desired.topology
    assert sorted(m.name for m in world.etcd.members) == sorted(topo.etcd)
    assert not any(m.learner for m in world.etcd.members)
    assert world.etcd.quorum()
    assert sorted(world.patroni.member_keys) == sorted(topo.postgres)
    assert world.true_primaries() == [world.patroni.leader]
    assert {ADMIN_USER, APP_USER} <= world.patroni.roles
    assert APP_DATABASE in world.patroni.databases
    assert sorted(world.machines) == sorted(m.name for m in topo.machines)
    assert world.stale_configs() == [], "a running service runs another config than its file"


@PROPERTY
@given(
    variant=st.sampled_from(sorted(VARIANTS)),
    seed=st.integers(0, 2**16),
    fault_rate=st.sampled_from(FAULT_RATES),
)
def test_an_empty_world_converges_safely(variant: str, seed: int, fault_rate: float) -> None:
    world = FakeWorld.for_cluster(manifest(**VARIANTS[variant]), seed=seed, fault_rate=fault_rate)
    world.faults.kinds = REPAIRED_FAULTS
    desired = desired_for(variant)
    reconcile(world, desired)
    assert_truly_converged(world, desired)


@cache
def converged_variant(variant: str) -> FakeWorld:
    return converged_world(manifest(**VARIANTS[variant]))


@PROPERTY
@given(
    base=st.sampled_from(sorted(VARIANTS)),
    target=st.sampled_from(sorted(VARIANTS)),
    seed=st.integers(0, 2**16),
    fault_rate=st.sampled_from(FAULT_RATES),
)
def test_any_manifest_change_converges_safely(
    base: str, target: str, seed: int, fault_rate: float
) -> None:
    """From each variant's converged cluster to any other: scaling etcd 1 <-> 5, PostgreSQL
    2 <-> 4, a restart-only parameter."""
    world = converged_variant(base).copy()
    world.faults = Faults(seed=seed, rate=fault_rate, kinds=REPAIRED_FAULTS)
    desired = desired_for(target)
    reconcile(world, desired)
    assert_truly_converged(world, desired)


def _drifts() -> st.SearchStrategy[Drift]:
    desired = desired_for("demo")
    services = sorted((m, s) for m, names in desired.services.items() for s in names)
    files = sorted((f.machine, f.path) for f in desired.files)
    machines = sorted(m.name for m in desired.topology.machines)
    return st.one_of(
        st.sampled_from(services).map(lambda ms: Drift("kill", *ms)),
        st.sampled_from(services).map(lambda ms: Drift("stop", *ms)),
        st.sampled_from(files).map(lambda mp: Drift("edit", *mp)),
        st.sampled_from(files).map(lambda mp: Drift("delete", *mp)),
        st.sampled_from(desired.topology.etcd).map(lambda m: Drift("remove_etcd_member", m)),
        st.sampled_from(desired.topology.etcd).map(lambda m: Drift("wipe_etcd_data", m)),
        st.sampled_from(desired.topology.postgres).map(lambda m: Drift("stale_primary", m)),
        st.sampled_from(machines).map(lambda m: Drift("power_off", m)),
        st.just(Drift("extra_etcd_member")),
    )


# A majority of etcd voters lost for good (data wiped, member removed, a dead voter added by
# hand) is a disaster recovery (etcd's --force-new-cluster), not a reconcile: at most one
# such drift per example.
DATA_LOSS = frozenset({"remove_etcd_member", "wipe_etcd_data", "extra_etcd_member"})


def recoverable(drifts: list[Drift], variant: str) -> bool:
    """Without a disaster: at most one etcd voter lost for good, and no machine that leaves
    the manifest powered off or stripped of a file while its vote may be needed (the
    operator boots and writes only the machines of the manifest)."""
    leaving = {m.name for m in desired_for("demo").topology.machines} - {
        m.name for m in desired_for(variant).topology.machines
    }
    broken = {d.machine for d in drifts if d.kind in ("power_off", "delete")}
    return sum(d.kind in DATA_LOSS for d in drifts) <= 1 and not (broken & leaving)


@PROPERTY
@given(
    case=st.tuples(
        st.lists(_drifts(), min_size=1, max_size=4), st.sampled_from(sorted(VARIANTS))
    ).filter(lambda case: recoverable(*case)),
    seed=st.integers(0, 2**16),
    fault_rate=st.sampled_from(FAULT_RATES),
    late_at=st.integers(0, 8),
)
def test_a_drifted_world_converges_safely(
    case: tuple[list[Drift], str], seed: int, fault_rate: float, late_at: int
) -> None:
    """Some drifts before the manifest changes, the others while the loop works on it."""
    drifts, variant = case
    world = converged_demo().copy()
    world.faults = Faults(seed=seed, rate=fault_rate, kinds=REPAIRED_FAULTS)
    # Data loss strikes early only: in the middle of a membership change it can be a
    # disaster (the last copy of a quorum) that no reconcile repairs.
    late = [d for d in drifts[1::2] if d.kind not in DATA_LOSS]
    early = [d for d in drifts if d not in late]
    for drift in early:
        drift.apply(world)
    desired = desired_for(variant)
    guard = Guard(stale_primaries_allowed=any(d.kind == "stale_primary" for d in drifts))
    reconcile(world, desired, guard, late=(late_at, late))
    assert_truly_converged(world, desired)


@PROPERTY
@given(
    case=st.tuples(
        st.lists(_drifts(), min_size=0, max_size=4), st.sampled_from(sorted(VARIANTS))
    ).filter(lambda case: recoverable(*case)),
    seed=st.integers(0, 2**16),
)
def test_no_fault_makes_the_loop_unsafe(case: tuple[list[Drift], str], seed: int) -> None:
    """Every fault, often and all the time (the operator dying mid-plan included): the loop
    need not converge, but it must never break a safety rule."""
    drifts, variant = case
    world = converged_demo().copy()
    world.faults = Faults(seed=seed, rate=0.3)
    for drift in drifts:
        drift.apply(world)
    desired = desired_for(variant)
    guard = Guard(stale_primaries_allowed=any(d.kind == "stale_primary" for d in drifts))
    for _ in range(30):
        cycle = run_cycle(world, desired, guard.before)
        guard.after(world, cycle)  # raises Unsafe at the first broken rule
    assert guard.checked == 30


def test_a_lost_reload_is_repaired() -> None:
    """Found by the fake world: a reload that failed after its file was written was never
    retried (the next cycle saw the file current). The file now carries a pending mark
    until the reload is done (plan._picked_up)."""
    world = converged_demo().copy()
    lost = "reload_lost: reload patroni on node1"
    world.faults = Faults(fail_once=[lost])
    reconcile(world, desired_for("postgres+1"))  # every patroni.yml changes (pg_hba)
    assert world.faults.injected == [lost]
    assert world.stale_configs() == []
