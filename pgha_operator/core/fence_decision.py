"""Whether to fence a dead primary's machine and release its leader key (pure).

Patroni cannot fail over faster than its leader lease: a crashed primary keeps the key until
the ttl runs out. The operator owns the machines, so it can make sure one is really down
(fence it, like a STONITH device) and then delete the key, and the replicas elect at once.
Fencing the wrong machine, or releasing the key of a live primary, would be worse than the
lease, so every guard below must hold; each refusal says which one did not.
"""

from __future__ import annotations

from dataclasses import dataclass

from pgha_operator.core.facts.types import MachineState


@dataclass(frozen=True)
class FenceView:
    """Everything the decision needs, observed right after the probes failed."""

    enabled: bool  # failover.fencing == auto
    provider_can_fence: bool
    leader: str  # the member the probes watched
    failures: int  # consecutive failed probes of the leader
    failures_needed: int
    machine: MachineState  # the provider's view of the leader's machine
    etcd_quorum: bool  # the operator read the leader key from etcd (a quorum read)
    leader_key: str | None  # who holds it now
    reachable_nodes: int  # PostgreSQL machines whose Patroni answered, the leader excluded
    total_nodes: int  # PostgreSQL machines in the cluster, the leader included
    candidates: tuple[str, ...]  # healthy replicas within maximumLagOnFailover (sync if required)
    seconds_since_last_fence: float | None
    ttl: int


@dataclass(frozen=True)
class FenceDecision:
    fence: bool
    reason: str  # one line for the log and status


def decide(v: FenceView) -> FenceDecision:
    def no(reason: str) -> FenceDecision:
        return FenceDecision(False, f"not fencing {v.leader}: {reason}")

    if not v.enabled:
        return no("fencing is off (failover.fencing: off); the leader lease decides")
    if not v.provider_can_fence:
        return no("this provider cannot power machines off; the leader lease decides")
    if v.failures < v.failures_needed:
        return no(f"{v.failures} of {v.failures_needed} probes failed so far")
    if v.machine == MachineState.PATRONI_DOWN:
        return no("PostgreSQL still runs there; Patroni is restarted instead (no failover)")
    if v.machine not in (MachineState.DEAD, MachineState.FROZEN):
        return no(f"the provider sees its machine {v.machine}, not dead or frozen")
    if not v.etcd_quorum:
        return no("the operator cannot read etcd with a quorum (it may be the one cut off)")
    # A majority of all PostgreSQL machines must answer; the dead leader counts against it.
    if v.reachable_nodes * 2 <= v.total_nodes:
        return no(
            f"only {v.reachable_nodes} of {v.total_nodes} PostgreSQL machines answer "
            "(the operator may be the one cut off)"
        )
    if v.leader_key != v.leader:
        return no(f"it no longer holds the leader key (held by {v.leader_key or 'nobody'})")
    if not v.candidates:
        return no("no healthy replica within maximumLagOnFailover could take over")
    if v.seconds_since_last_fence is not None and v.seconds_since_last_fence < v.ttl:
        return no(f"another fence happened {v.seconds_since_last_fence:.0f}s ago (< ttl {v.ttl}s)")
    return FenceDecision(
        True,
        f"fencing {v.leader}: {v.failures} probes failed, machine {v.machine}, "
        f"{v.reachable_nodes + 1}/{v.total_nodes} nodes seen, "
        f"candidates {', '.join(v.candidates)}",
    )
