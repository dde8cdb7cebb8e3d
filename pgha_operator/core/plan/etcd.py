"""etcd membership steps of the plan (pure). Rule 2: one member at a time, learners first,
never below quorum; a member whose data is lost is removed, wiped and added again."""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from pgha_operator.core.actions import (
    Action,
    AddEtcdMember,
    PromoteEtcdMember,
    RemoveEtcdMember,
    RemovePath,
    StartEtcdLearner,
    StopService,
    WaitFor,
)
from pgha_operator.core.desired import Desired
from pgha_operator.core.facts.observed import Observed
from pgha_operator.core.facts.types import EtcdMember
from pgha_operator.core.services import ServiceState


@dataclass(frozen=True)
class Membership:
    actions: tuple[Action, ...] = ()
    machines: frozenset[str] = frozenset()  # members in flux: no steady-state file or start
    busy: bool = False  # a membership change is under way: no etcd restarts meanwhile


def etcd_has_quorum(observed: Observed) -> bool:
    facts = observed.etcd
    if not facts.reachable:
        return False
    voters = [m for m in facts.members if not m.is_learner]
    healthy = [m for m in voters if m.name in facts.healthy]
    return bool(voters) and len(healthy) * 2 > len(voters)


def etcd_membership(desired: Desired, observed: Observed) -> Membership:
    facts = observed.etcd
    if not facts.reachable or not facts.members:
        # Bootstrap (or every member down): members start from the steady-state config.
        return Membership()
    topo = desired.topology
    by_peer = {url: m for m in facts.members for url in m.peer_urls}
    member_of = {
        name: by_peer[topo.etcd_peer_url(name)]
        for name in topo.etcd
        if topo.etcd_peer_url(name) in by_peer
    }
    desired_peers = {topo.etcd_peer_url(n) for n in topo.etcd}
    extra = [m for m in facts.members if not set(m.peer_urls) & desired_peers]
    voters = [m for m in facts.members if not m.is_learner]
    down = sorted(m.name or m.id for m in voters if m.name not in facts.healthy)

    learner = _learner_step(desired, observed, member_of)
    if learner is not None:
        return learner

    for name in topo.etcd:
        m = member_of.get(name)
        # Only a member that ever ran can have lost data; an unstarted one is still joining.
        lost = m is not None and m.started and observed.etcd_data.get(name) is False
        if lost and observed.service(name, "etcd") != ServiceState.RUNNING:
            return _replace(name, m, voters, facts.healthy)

    dead_extra = [m for m in extra if m.name not in facts.healthy]
    if dead_extra:
        # etcd's own advice: remove a failed member before adding its replacement.
        return _remove_extra(dead_extra[0], voters, extra, observed)

    missing = [n for n in topo.etcd if n not in member_of]
    if missing:
        return _add_member(desired, observed, missing, down)

    if extra:
        return _remove_extra(extra[0], voters, extra, observed)
    return Membership()


def _learner_step(
    desired: Desired, observed: Observed, member_of: dict[str, EtcdMember]
) -> Membership | None:
    """A learner of the manifest: start it, or promote it once it runs and etcd has a quorum."""
    for name in desired.topology.etcd:
        m = member_of.get(name)
        if m is None or not m.is_learner:
            continue
        if observed.service(name, "etcd") != ServiceState.RUNNING:
            steps: list[Action] = []
            if not m.started and observed.etcd_data.get(name):
                # Data of a former member (its machine was down when the learner was added):
                # etcd would start as that removed member and exit, every cycle.
                path = desired.etcd_data_dirs[name]
                steps.append(RemovePath(name, path, "stale data of a former member"))
            steps.append(_start_learner(desired, observed, name))
            return Membership(tuple(steps), frozenset({name}), True)
        if not etcd_has_quorum(observed):
            # A promotion cannot commit: tried anyway, it fails every cycle and starves the
            # starts planned after it, which are what bring the quorum back.
            return _refuse(f"an etcd quorum before promoting {name}", frozenset({name}))
        return Membership((PromoteEtcdMember(name, m.id),), frozenset({name}), True)

    return None


def _add_member(
    desired: Desired, observed: Observed, missing: list[str], down: list[str]
) -> Membership:
    """The next missing member joins as a learner, while every voter is healthy. Members not
    yet in the cluster never start from the steady-state ("new" cluster) config."""
    name = missing[0]
    joining = frozenset(missing)
    if down:
        return _refuse(f"every etcd voter healthy before adding {name} (down: {', '.join(down)})")
    steps: list[Action] = []
    if observed.service(name, "etcd") == ServiceState.RUNNING:
        steps.append(StopService(name, "etcd", "it joins afresh as a learner"))
    if observed.etcd_data.get(name):
        steps.append(
            RemovePath(name, desired.etcd_data_dirs[name], "stale data of a former member")
        )
    steps.append(AddEtcdMember(name, desired.topology.etcd_peer_url(name)))
    return Membership(tuple(steps), joining, True)


def _remove_extra(
    member: EtcdMember, voters: list[EtcdMember], extra: list[EtcdMember], observed: Observed
) -> Membership:
    """Rule 2 for a member outside the manifest. The member itself may be dead (that is often
    why it goes), so it is not asked to be healthy; the manifest's voters must be, the voters
    as they are must have a quorum (or etcd cannot commit the change) and the voters left
    after it must keep one."""
    label = member.name or member.id
    healthy = observed.etcd.healthy
    leaving = {m.id for m in extra}
    staying = [v for v in voters if v.id not in leaving]
    down = sorted(v.name or v.id for v in staying if v.name not in healthy)
    if down:
        return _refuse(f"refusing to remove etcd member {label} while {', '.join(down)} is down")
    rest = [v for v in voters if v.id != member.id]
    if not member.is_learner and not rest:
        return _refuse(f"refusing to remove {label}: it is the last voting member")
    alive = [v for v in rest if v.name in healthy]
    if not etcd_has_quorum(observed) or len(alive) * 2 <= len(rest):
        return _refuse(f"refusing to remove {label}: etcd has no quorum to commit the removal")
    return Membership((RemoveEtcdMember(label, member.id, "not in the manifest"),), busy=True)


def _replace(
    name: str, member: EtcdMember, voters: list[EtcdMember], healthy: frozenset[str]
) -> Membership:
    rest = [v for v in voters if v.id != member.id]
    alive = [v for v in rest if v.name in healthy]
    if len(alive) * 2 <= len(rest):
        return _refuse(f"cannot replace etcd member {name}: the others have no quorum")
    action = RemoveEtcdMember(name, member.id, "its data is lost; it rejoins empty")
    return Membership((action,), frozenset({name}), True)


def _refuse(what: str, machines: frozenset[str] = frozenset()) -> Membership:
    return Membership((WaitFor(what),), machines, busy=True)


def _start_learner(desired: Desired, observed: Observed, name: str) -> StartEtcdLearner:
    """The learner's first config names the membership it joins, as etcd requires."""
    topo = desired.topology
    names = {topo.etcd_peer_url(n): n for n in topo.etcd}
    cluster = ",".join(
        f"{names.get(m.peer_urls[0], m.name)}={m.peer_urls[0]}"
        for m in sorted(observed.etcd.members, key=lambda m: m.peer_urls[0])
    )
    f = next(
        f
        for f in desired.files
        if f.machine == name and f.service == "etcd" and not f.certificate and not f.defines
    )
    config = yaml.safe_load(f.content)
    config["initial-cluster"] = cluster
    config["initial-cluster-state"] = "existing"
    content = yaml.safe_dump(config, sort_keys=False)
    return StartEtcdLearner(name, f.path, content, f.mode, f.owner)
