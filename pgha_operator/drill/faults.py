"""Fault injectors. Each one hits the cluster through the provider (or Patroni, for a
planned switchover), holds the fault, undoes it, and returns the FaultWindow the checker
reads. Every injector undoes its fault in a `finally`: a drill that fails or is
interrupted never leaves a machine frozen, and "down" marks expire on their own.

Each fault needs one capability of the provider (`Fault.needs`, a Protocol of
shell/providers/base.py): hard power-off (`Fencing`: local, nspawn, vagrant), pausing a
machine (`Freezing`: local, nspawn), or cutting its network (`Isolation`: nspawn). Without
it the drill refuses before touching anything.

How long a fault lasts (`seconds=None` picks the default):
- crash-primary, freeze-primary, partition-primary: until another node accepts writes
  (after the operator fenced the old primary, or after the leader key's ttl), plus a
  second; at most ttl + 60 s;
- crash-replica, kill-etcd-member: 10 s;
- etcd-quorum-loss: until no node has accepted a write for 5 s; at most ttl + 60 s.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from pgha_operator.core.actions import Switchover
from pgha_operator.core.plan.patroni import switchover_candidate
from pgha_operator.core.topology import Role
from pgha_operator.drill.checker import FaultWindow
from pgha_operator.drill.lb_faults import LB_FAULTS
from pgha_operator.drill.target import DrillError, Live, Target
from pgha_operator.shell.clients.etcd import collect_etcd
from pgha_operator.shell.execute import execute
from pgha_operator.shell.providers.base import Fencing, Freezing, Isolation, capability
from pgha_operator.shell.state import clear_down, mark_down

DEFAULT_HOLD = 10.0  # seconds a crashed replica or etcd member stays down
SETTLE = 1.0  # seconds a crashed primary stays down after the failover
READ_ONLY_PROOF = 5.0  # quorum loss: seconds without any accepted write before restoring
MARK_MARGIN = 120.0  # a mark outlives the longest hold by this much, then expires

Inject = Callable[[Target, Live, "float | None"], FaultWindow]


Cap = TypeVar("Cap")


@dataclass(frozen=True)
class Fault:
    name: str
    summary: str
    inject: Inject
    needs: type | None = None  # the provider capability it uses: Fencing, Freezing, Isolation

    def refusal(self, target: Target) -> str | None:
        """Why this fault cannot run against `target`, or None."""
        provider = target.provider
        if self.needs is None or isinstance(provider, self.needs):
            return None
        kind = provider.kind
        if self.needs is Isolation:
            if kind == "local":
                return (
                    f"{self.name} cuts the primary's machine off the network, which needs "
                    "machines with their own network namespace (the nspawn provider). On the "
                    "local provider every machine shares this host's loopback interface and "
                    "outgoing loopback traffic always comes from 127.0.0.1, so no firewall "
                    "rule can isolate one machine; run this scenario on an nspawn cluster"
                )
            return f"{self.name}: provider {kind!r} cannot cut a machine off the network"
        if self.needs is Fencing:
            return (
                f"{self.name} stops machines hard, which provider {kind!r} cannot do "
                "(it does not own the machines' power)"
            )
        return f"{self.name}: provider {kind!r} cannot pause a machine's processes"


def _needs(target: Target, cap: type[Cap]) -> Cap:
    """The provider as `cap`; the drill refused earlier when it lacks it (Fault.refusal)."""
    found = capability(target.provider, cap)
    if found is None:
        raise DrillError(f"provider {target.provider.kind!r} lacks {cap.__name__}")
    return found


# --- helpers ---------------------------------------------------------------------------------


def _hold_until_failover(target: Target, live: Live, old: str, seconds: float | None) -> None:
    if seconds is not None:
        time.sleep(seconds)
        return
    limit = target.cluster.timing.ttl + 60
    if live.wait_for(lambda: bool(live.prober.writable_now() - {old}), limit):
        time.sleep(SETTLE)


def _crash(target: Target, machines: tuple[str, ...], reason: str, hold: float) -> None:
    """Mark first, then kill: a running operator must never see the machine dead and
    unmarked (it would restart it, and a crash would become a restart)."""
    for m in machines:
        mark_down(target.state_dir, m, hold + MARK_MARGIN, reason)
    fencing = _needs(target, Fencing)
    for m in machines:
        fencing.power_off(m)


def _pg_machines(target: Target, machines: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(m for m in machines if target.topology.machine(m).has(Role.POSTGRES))


def _window(
    scenario: str,
    target: Target,
    primary: str,
    hit: tuple[str, ...],
    started: float,
    *,
    etcd_hit: bool = True,
    expect_read_only: bool = False,
) -> FaultWindow:
    """The fault `scenario`, healed now, hit machines `hit` while `primary` led. Their
    PostgreSQL nodes must come back as replicas, and (etcd_hit) their etcd members healthy.
    Writes must flow again counted from the start, or from now when the outage was the
    point (expect_read_only)."""
    healed_at = time.monotonic()
    return FaultWindow(
        scenario,
        started,
        healed_at,
        old_primary=primary,
        old_primary_address=target.topology.address(primary),
        targets=hit,
        pg_targets=_pg_machines(target, hit),
        etcd_targets=tuple(m for m in hit if m in target.topology.etcd) if etcd_hit else (),
        expect_read_only=expect_read_only,
        recovery_from=healed_at if expect_read_only else started,
    )


# --- the faults ------------------------------------------------------------------------------


def switchover(target: Target, live: Live, seconds: float | None) -> FaultWindow:
    leader = live.primary()
    desired, observed = target.ctl.observe()
    candidate = switchover_candidate(desired, observed, leader)
    if candidate is None:
        raise DrillError(f"no streaming replica to switch over to from {leader}")
    env = replace(target.ctl.env(desired), lease=target.lease)
    started = time.monotonic()
    outcome = execute([Switchover(leader, candidate, "(drill)")], env)
    if outcome.error:
        raise DrillError(outcome.error)
    return _window("switchover", target, leader, (leader,), started, etcd_hit=False)


def crash_primary(target: Target, live: Live, seconds: float | None) -> FaultWindow:
    primary = live.primary()
    limit = seconds if seconds is not None else target.cluster.timing.ttl + 60
    started = time.monotonic()
    try:
        _crash(target, (primary,), "crash-primary", limit)
        _hold_until_failover(target, live, primary, seconds)
    finally:
        clear_down(target.state_dir, primary)
    return _window("crash-primary", target, primary, (primary,), started)


def freeze_primary(target: Target, live: Live, seconds: float | None) -> FaultWindow:
    primary = live.primary()
    freezing = _needs(target, Freezing)
    started = time.monotonic()
    try:
        freezing.freeze(primary)
        _hold_until_failover(target, live, primary, seconds)
    finally:
        freezing.thaw(primary)  # a hung VM resumes all at once
    return _window("freeze-primary", target, primary, (primary,), started, etcd_hit=False)


def crash_replica(target: Target, live: Live, seconds: float | None) -> FaultWindow:
    primary = live.primary()
    _, observed = target.ctl.observe()
    replicas = sorted(
        (m for m in observed.patroni.members if m.name != primary and m.state == "streaming"),
        # The synchronous standby first: losing it is the case that can block commits.
        key=lambda m: (m.role != "sync_standby", m.name),
    )
    if not replicas:
        raise DrillError("no streaming replica to crash")
    victim = replicas[0].name
    hold = DEFAULT_HOLD if seconds is None else seconds
    started = time.monotonic()
    try:
        _crash(target, (victim,), "crash-replica", hold)
        time.sleep(hold)
    finally:
        clear_down(target.state_dir, victim)
    return _window("crash-replica", target, primary, (victim,), started)


def _etcd_victims(target: Target, primary: str, count: int) -> tuple[str, ...]:
    """`count` etcd machines, the current etcd leader first, the primary's machine last."""
    facts = collect_etcd(target.topology.etcd_client_urls, tls=target.tls)
    leader = facts.leader.name if facts.leader else None
    order = sorted(target.topology.etcd, key=lambda m: (m == primary, m != leader, m))
    return tuple(order[:count])


def kill_etcd_member(target: Target, live: Live, seconds: float | None) -> FaultWindow:
    primary = live.primary()
    victims = _etcd_victims(target, primary, 1)
    hold = DEFAULT_HOLD if seconds is None else seconds
    started = time.monotonic()
    try:
        _crash(target, victims, "kill-etcd-member", hold)
        time.sleep(hold)
    finally:
        for m in victims:
            clear_down(target.state_dir, m)
    return _window("kill-etcd-member", target, primary, victims, started)


def etcd_quorum_loss(target: Target, live: Live, seconds: float | None) -> FaultWindow:
    primary = live.primary()
    members = len(target.topology.etcd)
    if members < 2:
        raise DrillError("etcd-quorum-loss needs at least 2 etcd members (1 has no quorum to lose)")
    victims = _etcd_victims(target, primary, members // 2 + 1)
    limit = seconds if seconds is not None else target.cluster.timing.ttl + 60
    started = time.monotonic()
    try:
        _crash(target, victims, "etcd-quorum-loss", limit)
        if seconds is not None:
            time.sleep(seconds)
        else:
            live.wait_for(lambda: live.prober.quiet_for() >= READ_ONLY_PROOF, limit)
    finally:
        for m in victims:
            clear_down(target.state_dir, m)
    # Read-only is the point: writes must come back once etcd does.
    return _window("etcd-quorum-loss", target, primary, victims, started, expect_read_only=True)


def partition_primary(target: Target, live: Live, seconds: float | None) -> FaultWindow:
    """Cut the primary's machine off (etcd, the other nodes, the load balancer): Patroni
    demotes it once it cannot refresh its leader key, a replica takes over after the
    lease. The drill cannot see the isolated node meanwhile (it is cut off from here too)."""
    primary = live.primary()
    isolation = _needs(target, Isolation)
    started = time.monotonic()
    try:
        isolation.isolate(primary)
        _hold_until_failover(target, live, primary, seconds)
    finally:
        isolation.reconnect(primary)
    return _window("partition-primary", target, primary, (primary,), started)


FAULTS: dict[str, Fault] = {
    f.name: f
    for f in (
        Fault("switchover", "planned switchover through Patroni's REST API", switchover),
        Fault(
            "crash-primary",
            "the primary's machine goes down hard (local: SIGKILL of Patroni and PostgreSQL) "
            "and stays down until another node accepts writes",
            crash_primary,
            needs=Fencing,
        ),
        Fault(
            "freeze-primary",
            "SIGSTOP every process of the primary's machine (a hung VM) until another node "
            "accepts writes, then SIGCONT",
            freeze_primary,
            needs=Freezing,
        ),
        Fault(
            "crash-replica",
            "a replica's machine (the synchronous standby first) goes down for 10 s",
            crash_replica,
            needs=Fencing,
        ),
        Fault(
            "kill-etcd-member",
            "the etcd leader's machine goes down for 10 s",
            kill_etcd_member,
            needs=Fencing,
        ),
        Fault(
            "etcd-quorum-loss",
            "a majority of etcd machines go down until the cluster has been read-only for "
            "5 s, then come back",
            etcd_quorum_loss,
            needs=Fencing,
        ),
        Fault(
            "partition-primary",
            "cut the primary's machine off the network until another node accepts writes "
            "(machines with their own network namespace: nspawn)",
            partition_primary,
            needs=Isolation,
        ),
        *(Fault(*lb) for lb in LB_FAULTS),  # the VIP's machine: drill/lb_faults.py
    )
}
