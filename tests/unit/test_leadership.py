"""Who acts: the pure decision (core/leadership.py), the lease kept against the fake etcd
(shell/leadership.py), and every acting path gated by it (cycle, executor, fencer)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from pgha_operator.core.errors import PermanentError
from pgha_operator.core.leadership import (
    MARGIN_SECONDS,
    TTL_SECONDS,
    LeaseGuard,
    LeaseView,
    Role,
    decide,
    etcd_quorum_stopped,
    leader_key,
)
from pgha_operator.core.services import ServiceState
from pgha_operator.shell import leadership as leadership_module
from pgha_operator.shell.controller import Controller
from pgha_operator.shell.execute import execute
from pgha_operator.shell.fencer import Fencer
from pgha_operator.shell.leadership import Leadership
from pgha_operator.shell.state import StateDir
from pgha_operator.shell.state.transfer import IMPORTED_MARK
from tests.fakeworld.drift import Drift, manifest
from tests.fakeworld.loop import observe_world
from tests.fakeworld.world import FakeWorld
from tests.unit.test_convergence import converged_demo
from tests.unit.test_rotation import converged_controller

KEY = leader_key("demo")
ETCD = ("etcd1", "etcd2", "etcd3")

LEADING = LeaseView(
    flock=True,
    etcd_answers=True,
    holder="me",
    ours=True,
    expires_in=TTL_SECONDS - 0.2,
    may_bootstrap=True,
    etcd_stopped=False,
    lease_seen_ago=0.1,
)


@pytest.fixture(autouse=True)
def _logs() -> Iterator[None]:
    with capture_logs():
        yield


@pytest.fixture(autouse=True)
def _no_keeper(monkeypatch: pytest.MonkeyPatch) -> None:
    # The keepalive thread runs on real time; these tests move the clock themselves.
    monkeypatch.setattr(Leadership, "_start_keeper", lambda self: None)


# --- the pure decision ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "role", "act", "campaign", "reason"),
    [
        ({}, Role.LEADER, True, False, "holds the leader lease"),
        ({"flock": False}, Role.STANDBY, False, False, "holds operator.lock"),
        ({"expires_in": MARGIN_SECONDS}, Role.STANDBY, False, True, "lost the leader lease"),
        ({"expires_in": -3.0, "etcd_answers": False}, Role.STANDBY, False, False, "may run"),
        (
            {"ours": False, "expires_in": None, "holder": "op-b"},
            Role.STANDBY,
            False,
            False,
            "operator op-b leads",
        ),
        (
            {"ours": False, "expires_in": None, "holder": None},
            Role.STANDBY,
            False,
            True,
            "campaigning",
        ),
    ],
)
def test_decide_with_etcd(
    change: dict[str, object], role: Role, act: bool, campaign: bool, reason: str
) -> None:
    d = decide(replace(LEADING, **change))  # type: ignore[arg-type]
    assert (d.role, d.act, d.campaign) == (role, act, campaign)
    assert reason in d.reason


NO_ETCD = replace(
    LEADING, etcd_answers=False, holder=None, ours=False, expires_in=None, lease_seen_ago=None
)


@pytest.mark.parametrize(
    ("change", "act", "reason"),
    [
        ({}, False, "its members may run"),  # a partition, not an outage: never act
        ({"etcd_stopped": True}, True, "operator.lock decides"),  # bootstrap / total outage
        ({"etcd_stopped": True, "may_bootstrap": False}, False, "imported state dir"),
        ({"etcd_stopped": True, "lease_seen_ago": 2.0}, False, "until every lease"),
        ({"etcd_stopped": True, "lease_seen_ago": TTL_SECONDS + MARGIN_SECONDS + 0.1}, True, ""),
        ({"etcd_stopped": True, "flock": False}, False, "operator.lock"),
    ],
)
def test_decide_without_etcd(change: dict[str, object], act: bool, reason: str) -> None:
    d = decide(replace(NO_ETCD, **change))  # type: ignore[arg-type]
    assert d.act is act and (d.role is Role.LEADER) is act and not d.campaign
    assert reason in d.reason


def test_etcd_quorum_stopped_counts_only_members_surely_down() -> None:
    running = {(m, "etcd"): ServiceState.RUNNING for m in ETCD}
    assert not etcd_quorum_stopped(ETCD, ETCD, running)
    one = {**running, ("etcd1", "etcd"): ServiceState.FAILED}
    assert not etcd_quorum_stopped(ETCD, ETCD, one)  # two still make a quorum
    two = {**one, ("etcd2", "etcd"): ServiceState.STOPPED}
    assert etcd_quorum_stopped(ETCD, ETCD, two)
    assert etcd_quorum_stopped(ETCD, ["etcd3"], running)  # two machines absent
    assert not etcd_quorum_stopped(ETCD, ETCD, {})  # not looked at: may run


# --- the lease against the fake etcd ----------------------------------------------------------


def two_operators(world: FakeWorld, tmp_path: Path) -> tuple[Leadership, Leadership]:
    """Two hosts: a state dir each, one etcd."""
    urls = world.desired(manifest()).topology.etcd_client_urls
    made = []
    for host in ("a", "b"):
        state = StateDir(tmp_path / host)
        made.append(Leadership(state, "demo", lambda: urls, world.clients()))
    return made[0], made[1]


def test_one_leads_the_other_stands_by_and_takes_over_when_the_lease_ends(
    tmp_path: Path,
) -> None:
    world = converged_demo().copy()
    a, b = two_operators(world, tmp_path)
    assert a.refresh().act and a.role is Role.LEADER
    decision = b.refresh()
    assert not decision.act and decision.reason == f"operator {a.identity} leads"
    assert world.etcd.keys[KEY] == a.identity
    guard = a.guard()
    assert guard is not None and guard.value == a.identity
    # The leader's lease expires in etcd (its process froze): its key goes with it.
    holder = world.etcd.leases.holder(KEY)
    assert holder is not None
    world.etcd.leases.revoke(holder.lease)
    assert b.refresh().act and world.etcd.keys[KEY] == b.identity
    assert not a.refresh().act  # the key is not ours any more: stop acting at once
    assert a.guard() is None and "leads" in a.decision.reason


def test_the_leader_stops_acting_before_its_lease_could_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No keepalive answered (etcd cut off): acting ends MARGIN_SECONDS before etcd could
    let the lease go, level-based, without any refresh() call."""
    world = converged_demo().copy()
    a, _ = two_operators(world, tmp_path)
    now = [1000.0]
    monkeypatch.setattr(leadership_module.time, "monotonic", lambda: now[0])
    assert a.refresh().act
    now[0] += TTL_SECONDS - MARGIN_SECONDS - 0.1
    assert a.may_act()
    now[0] += 0.2
    assert not a.may_act()


def test_a_second_operator_racing_for_a_free_key_loses_and_gives_its_lease_back(
    tmp_path: Path,
) -> None:
    world = converged_demo().copy()
    a, b = two_operators(world, tmp_path)
    a.refresh()
    # b read the key while it was free, then campaigns: its create finds a's key.
    b._read_key()
    b._holder = None
    b._campaign()
    assert world.etcd.keys[KEY] == a.identity and b.guard() is None
    assert set(world.etcd.leases.attached) == {world.etcd.leases.holder(KEY).lease}  # type: ignore[union-attr]


def test_release_revokes_the_lease_and_the_flock(tmp_path: Path) -> None:
    world = converged_demo().copy()
    a, b = two_operators(world, tmp_path)
    a.refresh()
    a.release()
    assert KEY not in world.etcd.keys and not a.state.operator_lock.held
    assert b.refresh().act  # a standby takes over at once, not after the TTL


def test_one_host_the_flock_picks_one(tmp_path: Path) -> None:
    world = converged_demo().copy()
    urls = world.desired(manifest()).topology.etcd_client_urls
    a, b = (
        Leadership(StateDir(tmp_path / "same"), "demo", lambda: urls, world.clients())
        for _ in range(2)
    )
    assert a.refresh().act
    decision = b.refresh()
    assert not decision.act and "operator.lock" in decision.reason


def test_an_imported_state_dir_never_bootstraps(tmp_path: Path) -> None:
    world = FakeWorld.for_cluster(manifest())  # nothing exists yet: no etcd answers
    a, b = two_operators(world, tmp_path)
    (tmp_path / "b").mkdir(exist_ok=True)
    (tmp_path / "b" / IMPORTED_MARK).write_text("{}")
    observed = observe_world(world, world.desired(manifest()))
    for op in (a, b):
        op.saw(observed, ETCD)
    assert a.refresh().act and "bootstrap" in a.decision.reason
    assert not b.refresh().act and "imported" in b.decision.reason


# --- every acting path is gated -------------------------------------------------------------


def haproxy_runs(world: FakeWorld) -> bool:
    proc = world.machines["haproxy"].procs.get("haproxy")
    return proc is not None and proc.state == ServiceState.RUNNING


def test_a_standby_controller_observes_but_changes_nothing(tmp_path: Path) -> None:
    world, ctl = converged_controller(tmp_path)
    other = world.etcd.leases.grant(TTL_SECONDS)
    world.etcd.leases.create(KEY, "host-b/pid 7/x", other)
    with pytest.raises(PermanentError, match=r"another operator \(host-b/pid 7/x\) leads"):
        ctl.lock("apply")
    assert not ctl.state.operator_lock.held  # refused: the flock is let go too
    Drift("kill", "haproxy", "haproxy").apply(world)
    ctl.stand_by()
    report = ctl.cycle()
    assert report.decision.startswith("standby: operator host-b/pid 7/x leads")
    assert report.plan.actions  # it sees the fault ...
    assert not haproxy_runs(world)  # ... and leaves it alone
    assert report.status["operator"]["role"] == "standby"
    assert ctl.role is Role.STANDBY
    world.etcd.leases.revoke(other)  # the leader died: its lease ended
    report = ctl.cycle()
    assert ctl.role is Role.LEADER and "start" in report.decision
    assert haproxy_runs(world)


def test_the_executor_stops_before_the_first_action_once_the_lease_is_gone(
    tmp_path: Path,
) -> None:
    world, ctl = converged_controller(tmp_path)
    Drift("kill", "haproxy", "haproxy").apply(world)
    desired, observed = ctl.observe()
    from pgha_operator.core.plan import plan

    actions = plan(desired, observed).actions
    assert actions
    outcome = execute(actions, ctl.env(desired), may_act=lambda: False)
    assert outcome.done == [] and outcome.error is not None
    assert "lost the lease" in outcome.error


class StubLease:
    def __init__(self, acts: bool, guard: LeaseGuard | None) -> None:
        self.acts, self._guard = acts, guard

    def may_act(self) -> bool:
        return self.acts

    def guard(self) -> LeaseGuard | None:
        return self._guard


def fencer_with(world: FakeWorld, lease: StubLease) -> Fencer:
    desired = world.desired(manifest(fencing="auto"))
    fencer = Fencer(desired, world.provider, world.clients(), lease=lease)
    fencer.update(desired, observe_world(world, desired))
    return fencer


@pytest.fixture
def frozen_primary() -> FakeWorld:
    w = converged_demo().copy()
    for _, node in w.patroni.nodes():
        node.lag = 0
    return w


def test_the_fencers_release_fails_when_the_leader_key_is_not_ours(
    frozen_primary: FakeWorld,
) -> None:
    world = frozen_primary
    lease = world.etcd.leases.grant(TTL_SECONDS)
    revision = world.etcd.leases.create(KEY, "host-b/pid 7/x", lease)  # another operator's
    assert revision is not None
    fencer = fencer_with(world, StubLease(True, LeaseGuard(KEY, "host-a/pid 1/y", revision)))
    world.provider.freeze("node1")
    decision = None
    for _ in range(10):
        decision = fencer.probe() or decision
        if decision is not None:
            break
    assert decision is not None and decision.fence
    assert "leader key not released" in decision.reason
    assert world.etcd.keys["/service/demo/leader"] == "node1"  # Patroni's key untouched


def test_the_fencers_release_with_our_own_key_deletes_patronis(
    frozen_primary: FakeWorld,
) -> None:
    world = frozen_primary
    lease = world.etcd.leases.grant(TTL_SECONDS)
    revision = world.etcd.leases.create(KEY, "me", lease)
    assert revision is not None
    fencer = fencer_with(world, StubLease(True, LeaseGuard(KEY, "me", revision)))
    world.provider.freeze("node1")
    decision = None
    for _ in range(10):
        decision = fencer.probe() or decision
        if decision is not None:
            break
    assert decision is not None and "leader key released" in decision.reason
    assert "/service/demo/leader" not in world.etcd.keys


def test_a_standby_fencer_probes_and_fences_nothing(frozen_primary: FakeWorld) -> None:
    world = frozen_primary
    fencer = fencer_with(world, StubLease(False, None))
    world.provider.freeze("node1")
    assert all(fencer.probe() is None for _ in range(10))
    assert world.machines["node1"].powered and fencer.failures == 0


def test_run_waits_as_standby_instead_of_exiting(tmp_path: Path) -> None:
    """`run` beside a running operator on the same host: prepare() no longer refuses."""
    world, ctl = converged_controller(tmp_path)
    ctl.lock("run")
    try:
        second = Controller(
            ctl.paths, state_dir=ctl.state_dir, provider=world.provider, clients=world.clients()
        )
        second.prepare(standby=True)
        assert second.leadership is not None and not second.leadership.refresh().act
        assert second.role is Role.STANDBY
    finally:
        ctl.unlock()


def test_a_leader_whose_lease_ran_out_in_a_lost_quorum_restarts_the_dead_members() -> None:
    # etcd lost its quorum: keepalives fail, so the lease runs out while the view still
    # says "ours". Once no quorum can run and no lease can live, the flock decides again
    # (found by the etcd-quorum-loss drill with a running operator: it waited forever).
    lost = replace(LEADING, etcd_answers=False, expires_in=-30.0, lease_seen_ago=60.0)
    assert not decide(replace(lost, etcd_stopped=False)).act  # members may still run
    assert not decide(replace(lost, lease_seen_ago=1.0, etcd_stopped=True)).act
    assert decide(replace(lost, etcd_stopped=True)).act
    assert not decide(replace(lost, expires_in=0.5, etcd_stopped=True)).act  # not yet out
