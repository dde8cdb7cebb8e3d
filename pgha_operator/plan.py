"""plan(desired, observed) -> the ordered actions that move the cluster toward the manifest.

PURE: no I/O, two immutable values in, one immutable Plan out. A converged observation
plans nothing. Ordering follows the dependency chain: machines, files, etcd, Patroni,
HAProxy. Safety rules (DESIGN §2) are enforced here, so they are unit-testable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from pgha_operator.actions import (
    Action,
    CreateMachine,
    CreateRole,
    ReloadService,
    RestartService,
    StartService,
    WaitFor,
    WriteFile,
)
from pgha_operator.observe.snapshot import Observed
from pgha_operator.render import ADMIN_USER, DesiredFile
from pgha_operator.servicedef import ServiceState
from pgha_operator.spec import Cluster
from pgha_operator.topology import Topology

# Services that cannot re-read their configuration: a changed file means a restart.
RESTART_ON_CHANGE = frozenset({"etcd"})
# Start order: the DCS first, then the databases, then the router in front of them.
START_ORDER = {"etcd": 0, "patroni": 1, "haproxy": 2}


@dataclass(frozen=True)
class Desired:
    cluster: Cluster
    topology: Topology
    files: tuple[DesiredFile, ...]
    services: Mapping[str, tuple[str, ...]]  # machine -> services, in start order


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    decision: str  # one human-readable line: logged, shown by status
    blocked: str | None = None  # a condition reason that stops all changes (TwoPrimaries)

    @property
    def empty(self) -> bool:
        return not self.actions


def content_hash(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()


def etcd_has_quorum(desired: Desired, observed: Observed) -> bool:
    facts = observed.etcd
    if not facts.reachable:
        return False
    voters = [m for m in facts.members if not m.is_learner]
    healthy = [m for m in voters if m.name in facts.healthy]
    return bool(voters) and len(healthy) * 2 > len(voters)


def plan(desired: Desired, observed: Observed) -> Plan:
    primaries = sorted(observed.patroni.primaries)
    if len(primaries) > 1:
        # Rule 6: never act while two nodes accept writes; Patroni/etcd must resolve it.
        return Plan(
            (),
            f"TwoPrimaries: {', '.join(primaries)} all answer GET /primary; "
            "changing nothing until only one does",
            blocked="TwoPrimaries",
        )

    actions: list[Action] = []
    topo = desired.topology
    actions += [CreateMachine(m.name) for m in topo.machines if not observed.has_machine(m.name)]

    changed_services: dict[tuple[str, str], str] = {}
    redefined: dict[tuple[str, str], str] = {}
    for f in desired.files:
        have = observed.files.get((f.machine, f.path))
        if have == content_hash(f.content):
            continue
        reason = "missing" if have is None else "changed"
        actions.append(WriteFile(f.machine, f.path, f.content, f.mode, f.owner, reason))
        if f.service and observed.service(f.machine, f.service) == ServiceState.RUNNING:
            changed_services.setdefault((f.machine, f.service), f"{f.path} {reason}")
        if f.defines and observed.service(f.machine, f.defines) == ServiceState.RUNNING:
            redefined.setdefault((f.machine, f.defines), f"definition {reason}")

    actions += _config_changes(changed_services, redefined, observed)
    actions += _service_starts(desired, observed)
    actions += _roles(desired, observed)
    return Plan(tuple(actions), _decision(actions))


def _config_changes(
    changed: Mapping[tuple[str, str], str],
    redefined: Mapping[tuple[str, str], str],
    observed: Observed,
) -> list[Action]:
    """Reload what can reload; restart the rest, one service per cycle (rule 3), PostgreSQL
    replicas before the primary."""
    out: list[Action] = []
    restarts: dict[tuple[str, str], str] = dict(redefined)
    for key, reason in sorted(changed.items()):
        if key[1] in RESTART_ON_CHANGE or key in restarts:
            restarts.setdefault(key, reason)
        else:
            out.append(ReloadService(key[0], key[1], reason))
    primary = observed.patroni.leader.name if observed.patroni.leader else None
    if restarts:
        machine, service = min(restarts, key=lambda k: (k[1] == "patroni" and k[0] == primary, k))
        out.append(RestartService(machine, service, restarts[(machine, service)]))
    return out


def _roles(desired: Desired, observed: Observed) -> list[Action]:
    """Roles Patroni does not create (Patroni 4 ignores bootstrap.users)."""
    if observed.roles is None or ADMIN_USER in observed.roles:
        return []
    return [CreateRole(ADMIN_USER)]


def _service_starts(desired: Desired, observed: Observed) -> list[Action]:
    out: list[Action] = []
    stopped = sorted(
        (
            (machine, service)
            for machine, services in desired.services.items()
            for service in services
            if observed.service(machine, service) != ServiceState.RUNNING
        ),
        key=lambda ms: (START_ORDER.get(ms[1], 9), ms[0]),
    )
    quorum = etcd_has_quorum(desired, observed)
    waiting_for_etcd = False
    for machine, service in stopped:
        if service == "patroni" and not quorum:
            # Patroni without a DCS would only loop; start it once etcd answers.
            waiting_for_etcd = True
            continue
        out.append(StartService(machine, service))
    if waiting_for_etcd:
        out.append(WaitFor("an etcd quorum before starting Patroni"))
    return out


def _decision(actions: list[Action]) -> str:
    if not actions:
        return "converged"
    first = actions[0].describe
    return first if len(actions) == 1 else f"{first} (+{len(actions) - 1} more)"
