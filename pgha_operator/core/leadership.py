"""Which operator acts (pure): the leader lease in the cluster's etcd, the flock on one host.

Any number of `run` operators may watch one cluster; exactly one acts. Once the cluster's
etcd answers, the one whose lease holds the key `/pgha-operator/<cluster>/leader` leads;
on one host, the state dir's `operator.lock` (flock) also picks one process. Before etcd
exists, or while no quorum of its members runs at all (no lease can then be held by anyone),
the flock alone decides, and only for an operator whose state dir may bootstrap the cluster
(never one made by `state import`: a standby never bootstraps).

The shell (shell/leadership.py) gathers a `LeaseView` and asks `decide`; it checks
`decide(...).act` again right before executing anything (level-based: a lost lease stops
the next change, not only the next cycle).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from pgha_operator.core.services import ServiceState

TTL_SECONDS = 5  # the lease's time to live in etcd
KEEPALIVE_SECONDS = 1.0  # how often the leader refreshes it
# The leader stops acting this long before its lease could have expired in etcd: a change
# that starts then still begins while no other operator can hold the lease.
MARGIN_SECONDS = 1.5
CAMPAIGN_SECONDS = 0.5  # how often a standby looks at the key


class Role(StrEnum):
    LEADER = "leader"
    STANDBY = "standby"


def leader_key(cluster: str) -> str:
    return f"/pgha-operator/{cluster}/leader"


@dataclass(frozen=True)
class LeaseView:
    """What one operator knows at one moment."""

    flock: bool  # holds its state dir's operator.lock
    etcd_answers: bool  # the last call to the cluster's etcd got an answer
    holder: str | None  # the operator named in the leader key (None: no key)
    ours: bool  # the key is ours: our identity and the revision we created it at
    expires_in: float | None  # seconds our lease surely lasts (None: we hold none)
    may_bootstrap: bool  # the state dir may act without a lease (not imported)
    etcd_stopped: bool  # observed: no quorum of etcd members runs (no lease can exist)
    lease_seen_ago: float | None  # seconds since a live lease (ours or not) was last seen


@dataclass(frozen=True)
class LeaderDecision:
    role: Role
    act: bool
    campaign: bool  # try to create the key now (etcd answers and nobody holds it)
    reason: str


def decide(v: LeaseView) -> LeaderDecision:
    if not v.flock:
        return LeaderDecision(
            Role.STANDBY, False, False, "another operator on this host holds operator.lock"
        )
    if v.ours and v.expires_in is not None:
        if v.expires_in > MARGIN_SECONDS:
            return LeaderDecision(Role.LEADER, True, False, "holds the leader lease")
        if v.etcd_answers or v.expires_in > 0:
            return LeaderDecision(
                Role.STANDBY, False, v.etcd_answers, "lost the leader lease: stopped acting"
            )
        # Our lease has surely run out and etcd does not answer (a lost quorum): as for any
        # operator without a lease, else nobody would ever restart the dead members.
    if v.etcd_answers:
        if v.holder is not None:
            return LeaderDecision(Role.STANDBY, False, False, f"operator {v.holder} leads")
        return LeaderDecision(Role.STANDBY, False, True, "the leader key is free: campaigning")
    return _without_etcd(v)


def _without_etcd(v: LeaseView) -> LeaderDecision:
    """etcd does not answer: the flock decides only where no lease can exist any more."""
    if not v.may_bootstrap:
        return LeaderDecision(
            Role.STANDBY,
            False,
            False,
            "etcd does not answer; an imported state dir acts only under the lease",
        )
    if not v.etcd_stopped:
        return LeaderDecision(
            Role.STANDBY,
            False,
            False,
            "etcd does not answer, yet its members may run: waiting for the lease",
        )
    if v.lease_seen_ago is not None and v.lease_seen_ago <= TTL_SECONDS + MARGIN_SECONDS:
        return LeaderDecision(
            Role.STANDBY, False, False, "etcd stopped: waiting until every lease has expired"
        )
    return LeaderDecision(
        Role.LEADER, True, False, "no etcd quorum runs: operator.lock decides (bootstrap)"
    )


def etcd_quorum_stopped(
    members: Iterable[str],
    machines_up: Iterable[str],
    services: Mapping[tuple[str, str], ServiceState],
) -> bool:
    """True when so many etcd members surely do not run (machine absent or stopped, or its
    etcd service observed stopped or failed) that no quorum can: then nobody holds a lease.
    A member that was not looked at counts as maybe running."""
    names = list(members)
    up = set(machines_up)
    stopped = sum(
        1
        for m in names
        if m not in up or services.get((m, "etcd")) in (ServiceState.STOPPED, ServiceState.FAILED)
    )
    return stopped > len(names) - (len(names) // 2 + 1)


@dataclass(frozen=True)
class LeaseGuard:
    """The operator's own leader key as it created it: a change made in one etcd transaction
    with this guard happens only while that key still exists unchanged (same value, same
    creation revision), i.e. while this operator's lease holds."""

    key: str
    value: str
    revision: int
