"""Whether to fence a dead primary's machine and release its leader key (pure).

Patroni cannot fail over faster than its leader lease: a crashed primary keeps the key until
the ttl runs out. The operator owns the machines, so it can make sure one is really down
(fence it, like a STONITH device) and then delete the key, and the replicas elect at once.
Fencing the wrong machine, or releasing the key of a live primary, would be worse than the
lease, so every guard below must hold; each refusal says which one did not.

Death is seen two ways: `failures_needed` failed probes of the leader, or sooner when the
provider reports it (`death_reported`): every vital process of the machine exited (a
pidfd, shell/death_watch.py), or after one failed probe every process of the machine is
stopped and stays so (frozen). Either way the provider's own view of the machine must say
dead or frozen, and every other guard still holds.

A machine that still runs but answers nothing (cut off from the network: the provider sees
it RUNNING) is fenced the way Pacemaker fences an unreachable node, and only when the
provider can power it off without its network (nspawn, vagrant, a fence agent): after
`failures_needed` failed probes, and only when every replica that answered confirms that
it lost the primary too (its own network cannot reach the primary's PostgreSQL). A cut
between the operator and the primary alone fences nothing: a replica still in touch says so.

The anti-flap guard is about the operator itself: after a fence, no second one until the
operator has seen the cluster healthy again (a primary answered its probes). A storm of
fences, each new primary fenced in turn, is what an operator that cannot see (its own
network or load) would cause; two honest deaths a minute apart are not that.
"""

from __future__ import annotations

import json
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
    # Seconds since this operator's last fence while no primary has answered its probes
    # since then (None: no fence yet, or the cluster was seen healthy after it).
    unhealthy_since_fence: float | None = None
    # The provider itself reported the machine dead (its vital processes exited) or frozen
    death_reported: bool = False
    # Replicas, among the `reachable_nodes` that answered, whose own network cannot reach
    # the leader's PostgreSQL either (None: the provider cannot ask them)
    replicas_lost_leader: int | None = None


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
    if v.failures < v.failures_needed and not v.death_reported:
        return no(f"{v.failures} of {v.failures_needed} probes failed so far")
    if v.machine == MachineState.PATRONI_DOWN:
        return no("PostgreSQL still runs there; Patroni is restarted instead (no failover)")
    if v.machine not in (MachineState.DEAD, MachineState.FROZEN, MachineState.RUNNING):
        return no(f"the provider sees its machine {v.machine}, not dead, frozen or running")
    cut_off = v.machine == MachineState.RUNNING
    if cut_off and v.failures < v.failures_needed:
        return no(f"its machine runs; {v.failures} of {v.failures_needed} probes failed so far")
    if not v.etcd_quorum:
        return no("the operator cannot read etcd with a quorum (it may be the one cut off)")
    # A majority of all PostgreSQL machines must answer; the dead leader counts against it.
    if v.reachable_nodes * 2 <= v.total_nodes:
        return no(
            f"only {v.reachable_nodes} of {v.total_nodes} PostgreSQL machines answer "
            "(the operator may be the one cut off)"
        )
    if cut_off and (refusal := _replicas_refuse(v)):
        return no(refusal)
    if v.leader_key != v.leader:
        return no(f"it no longer holds the leader key (held by {v.leader_key or 'nobody'})")
    if not v.candidates:
        return no("no healthy replica within maximumLagOnFailover could take over")
    if v.unhealthy_since_fence is not None:
        return no(
            f"the cluster has not been healthy since this operator's last fence "
            f"{v.unhealthy_since_fence:.1f} s ago (no primary has answered its probes since): "
            "another fence could come from the operator's own blindness"
        )
    seen = f"reported {v.machine} by the provider" if v.death_reported else "probes failed"
    if cut_off:
        seen = f"cut off, lost by {v.replicas_lost_leader} replicas too"
    return FenceDecision(
        True,
        f"fencing {v.leader}: {seen} ({v.failures} probes failed), machine {v.machine}, "
        f"{v.reachable_nodes + 1}/{v.total_nodes} nodes seen, "
        f"candidates {', '.join(v.candidates)}",
    )


def _replicas_refuse(v: FenceView) -> str | None:
    """Why the replicas do not confirm that a running leader is cut off, or None."""
    if v.replicas_lost_leader is None:
        return (
            "its machine still runs and the provider cannot ask the replicas whether they "
            "reach it (a cut between the operator and the primary alone fences nothing)"
        )
    if v.replicas_lost_leader < v.reachable_nodes:
        return (
            f"its machine still runs and only {v.replicas_lost_leader} of "
            f"{v.reachable_nodes} answering replicas lost it too (a cut between the "
            "operator and the primary alone fences nothing)"
        )
    return None


def failover_key_value(synchronous: str, candidates: tuple[str, ...]) -> str | None:
    """What the release writes to Patroni's failover key, in the same transaction, or None
    (Patroni's own election decides).

    Patroni's election asks every member it knew under the old leader, the old leader
    first among them in synchronous mode, whether it is the healthiest, waiting up to 2 s
    for each answer (hard-coded): a machine cut off from the network never answers. Naming
    the candidate (`{"member": ...}`, as `patronictl failover` does) makes it take the key
    at once. Only with synchronous replication: the candidate is then the synchronous
    standby, the one member Patroni would let win anyway and which holds every
    acknowledged commit; the election's other purpose, an old leader still running, is
    what the fence (powered off, confirmed) has ruled out. Asynchronous clusters keep the
    election: it finds the replica with the most WAL, which the operator does not compare.
    """
    if synchronous == "off" or not candidates:
        return None
    return json.dumps({"member": candidates[0]})
