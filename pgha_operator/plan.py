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
    ReloadService,
    RestartService,
    StartService,
    WaitFor,
    WriteFile,
)
from pgha_operator.observe.snapshot import Observed
from pgha_operator.render import DesiredFile
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
    for f in desired.files:
        have = observed.files.get((f.machine, f.path))
        if have == content_hash(f.content):
            continue
        reason = "missing" if have is None else "changed"
        actions.append(WriteFile(f.machine, f.path, f.content, f.mode, f.owner, reason))
        if f.service and observed.service(f.machine, f.service) == ServiceState.RUNNING:
            changed_services.setdefault((f.machine, f.service), f"{f.path} {reason}")

    actions += _config_changes(changed_services)
    actions += _service_starts(desired, observed)
    return Plan(tuple(actions), _decision(actions))


def _config_changes(changed: Mapping[tuple[str, str], str]) -> list[Action]:
    """Reload what can reload; restart the rest one at a time (rule 3)."""
    out: list[Action] = []
    restarted = False
    for (machine, service), reason in sorted(changed.items()):
        if service in RESTART_ON_CHANGE:
            if not restarted:
                out.append(RestartService(machine, service, reason))
                restarted = True
        else:
            out.append(ReloadService(machine, service, reason))
    return out


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
