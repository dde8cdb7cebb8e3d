"""plan(desired, observed) -> the ordered actions that move the cluster toward the manifest.

PURE: no I/O, two immutable values in, one immutable Plan out. A converged observation
plans nothing. Ordering follows the dependency chain: machines, files, removals, etcd
membership, service starts, Patroni's DCS config, rolling restarts, roles. Safety rules
(DESIGN §2) are enforced here, so they are unit-testable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from pgha_operator.core.actions import (
    Action,
    CreateMachine,
    CreateRole,
    ReloadService,
    RestartService,
    StartService,
    Switchover,
    WaitFor,
    WriteFile,
)
from pgha_operator.core.desired import Desired, Plan, content_hash
from pgha_operator.core.facts.observed import Observed
from pgha_operator.core.plan.etcd import etcd_has_quorum, etcd_membership
from pgha_operator.core.plan.patroni import (
    config_patch,
    removals,
    rolling_restart,
    switchover_candidate,
)
from pgha_operator.core.plan.reinit import reinitialize_stuck
from pgha_operator.core.render import ADMIN_USER
from pgha_operator.core.services import ServiceState

__all__ = ["Desired", "Plan", "content_hash", "etcd_has_quorum", "plan"]

# Services that cannot re-read their configuration: a changed file means a restart.
RESTART_ON_CHANGE = frozenset({"etcd"})
# Start order: the DCS first, then the databases, then the router in front of them.
START_ORDER = {"etcd": 0, "patroni": 1, "haproxy": 2}


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
    # A machine marked down (drill, fencing) is not brought back: on machine providers,
    # creating an existing machine boots it.
    actions += [
        CreateMachine(m.name)
        for m in topo.machines
        if not observed.has_machine(m.name)
        and m.name not in observed.down
        and not observed.machine_error(m.name)  # a broken record: repaired by hand
    ]

    leaving = removals(desired, observed)
    # While a leaving primary hands over, HAProxy keeps routing to it (new config after).
    handing_over = any(isinstance(a, Switchover) for a in leaving)
    membership = etcd_membership(desired, observed)
    # Members still joining get their config from the join step, not the steady-state file.
    settling = membership.machines

    writes: list[tuple[WriteFile, str | None]] = []  # with the reader that may reload
    reloads: dict[tuple[str, str], str] = {}
    # Writes whose reader must restart are held back until that restart is planned: a file
    # written without its restart would leave the old config running unnoticed.
    held: dict[tuple[str, str], list[WriteFile]] = {}
    held_reason: dict[tuple[str, str], str] = {}
    for f in desired.files:
        if f.service == "etcd" and f.machine in settling:
            continue
        if f.service == "haproxy" and handing_over:
            continue
        have = observed.files.get((f.machine, f.path))
        if have == content_hash(f.content):
            continue
        reason = "missing" if have is None else "changed"
        write = WriteFile(f.machine, f.path, f.content, f.mode, f.owner, reason)
        reader_running = bool(f.service) and _running(observed, f.machine, f.service)
        if f.defines and _running(observed, f.machine, f.defines):
            key = (f.machine, f.defines)
            held.setdefault(key, []).append(write)
            held_reason.setdefault(key, f"its definition {reason}")
        elif reader_running and f.service in RESTART_ON_CHANGE:
            key = (f.machine, f.service)
            held.setdefault(key, []).append(write)
            held_reason.setdefault(key, f"{f.path} {reason}")
        else:
            writes.append((write, f.service))
            if reader_running:
                reloads.setdefault((f.machine, f.service), f"{f.path} {reason}")
    for key in held:
        reloads.pop(key, None)  # its reader restarts anyway: no separate reload

    # Each reload right after its file: a later write that fails must not strand a file
    # already written without its reload (the next cycle sees the file current).
    for write, reader in writes:
        reason = reloads.pop((write.machine, reader), None) if reader else None
        if reader and reason is not None:
            actions += _write_and_reload(write, reader, reason)
        else:
            actions.append(write)
    actions += _one_restart(held, held_reason, desired, observed, membership.busy)
    actions += leaving
    actions += membership.actions
    actions += _service_starts(desired, observed, settling)
    if not any(isinstance(a, StartService) for a in actions):
        actions += config_patch(desired, observed)
        actions += rolling_restart(desired, observed)
        actions += reinitialize_stuck(desired, observed)
    actions += _roles(observed)
    # A wait is a barrier: whatever else can be done this cycle goes before it.
    ordered = [a for a in actions if not isinstance(a, WaitFor)]
    ordered += [a for a in actions if isinstance(a, WaitFor)][:1]
    return Plan(tuple(ordered), _decision(ordered))


# Appended to a file while its reader's reload is pending: a no-op to YAML and haproxy.cfg.
RELOAD_PENDING = "\n"


def _write_and_reload(write: WriteFile, reader: str, reason: str) -> list[Action]:
    """Write, reload, write again: the first write carries RELOAD_PENDING, so until the
    reload is done the file differs from the rendered one and the next cycle plans the
    reload again. Otherwise a reload lost after its write (the call failed, the operator
    died) would never be retried: the file looks current, the service runs the old one."""
    pending = replace(
        write, content=write.content + RELOAD_PENDING, reason=f"{write.reason}, reload pending"
    )
    return [pending, ReloadService(write.machine, reader, reason), write]


def _running(observed: Observed, machine: str, service: str) -> bool:
    return observed.service(machine, service) == ServiceState.RUNNING


def _one_restart(
    held: Mapping[tuple[str, str], list[WriteFile]],
    reasons: Mapping[tuple[str, str], str],
    desired: Desired,
    observed: Observed,
    etcd_busy: bool,
) -> list[Action]:
    """One restart per cycle (rule 3): etcd only while every voter is healthy and no
    membership change runs; PostgreSQL replicas first, the primary after a switchover."""
    etcd_ok = not etcd_busy and _all_voters_healthy(observed)
    # Restarting Patroni, or the switchover before it, needs the DCS: without a quorum the
    # call fails every cycle and starves the starts planned after it.
    patroni_ok = etcd_has_quorum(observed)
    keys = [k for k in held if (k[1] != "etcd" or etcd_ok) and (k[1] != "patroni" or patroni_ok)]
    if not keys:
        return []
    primary = observed.patroni.leader.name if observed.patroni.leader else None
    machine, service = min(keys, key=lambda k: (k[1] == "patroni" and k[0] == primary, k))
    if service == "patroni" and machine == primary:
        candidate = switchover_candidate(desired, observed, machine)
        if candidate is not None:
            return [Switchover(machine, candidate, f"before restarting Patroni on {machine}")]
        if len(desired.topology.postgres) > 1:
            # As the rolling restart does: a replica of the manifest takes over first.
            return [
                WaitFor(f"a healthy replica to take over before restarting Patroni on {machine}")
            ]
    return [
        *held[(machine, service)],
        RestartService(machine, service, reasons[(machine, service)]),
    ]


def _all_voters_healthy(observed: Observed) -> bool:
    facts = observed.etcd
    voters = [m for m in facts.members if not m.is_learner]
    return facts.reachable and bool(voters) and all(m.name in facts.healthy for m in voters)


def _service_starts(desired: Desired, observed: Observed, settling: frozenset[str]) -> list[Action]:
    out: list[Action] = []
    stopped = sorted(
        [
            (machine, service)
            for machine, services in desired.services.items()
            for service in services
            if observed.service(machine, service) != ServiceState.RUNNING
            and not (service == "etcd" and machine in settling)
            and machine not in observed.down  # a crashed machine stays down until unmarked
        ]
        + _leaving_voters_down(desired, observed),
        key=lambda ms: (START_ORDER.get(ms[1], 9), ms[0]),
    )
    quorum = etcd_has_quorum(observed)
    waiting_for_etcd = False
    for machine, service in stopped:
        if service == "patroni" and not quorum:
            # Patroni without a DCS would only loop; start it once etcd answers.
            waiting_for_etcd = True
            continue
        out.append(StartService(machine, service))
    if waiting_for_etcd:
        out.append(WaitFor("an etcd quorum before starting Patroni"))
    down = sorted(m for m in observed.down if m in desired.services)
    if down:
        out.append(
            WaitFor(f"{', '.join(down)} to come back (marked down by a drill or by fencing)")
        )
    return out


def _leaving_voters_down(desired: Desired, observed: Observed) -> list[tuple[str, str]]:
    """A machine that left the manifest but is still an etcd voter counts for the quorum
    until the membership step removes it: its stopped etcd is started again (else scaling
    down with that member down waits forever for a quorum only it can give)."""
    voters = {url for m in observed.etcd.voters for url in m.peer_urls}
    port = desired.topology.etcd_peer_port
    return [
        (name, "etcd")
        for name, fact in sorted(observed.machines.items())
        if name not in desired.services
        and fact.exists
        and name not in observed.down
        and f"http://{fact.address}:{port}" in voters
        and observed.service(name, "etcd") != ServiceState.RUNNING
    ]


def _roles(observed: Observed) -> list[Action]:
    """Roles Patroni does not create (Patroni 4 ignores bootstrap.users)."""
    leader = observed.patroni.leader
    if observed.roles is None or ADMIN_USER in observed.roles or leader is None:
        return []
    return [CreateRole(ADMIN_USER, leader.host, leader.port)]


def _decision(actions: list[Action]) -> str:
    if not actions:
        return "converged"
    first = actions[0].describe
    return first if len(actions) == 1 else f"{first} (+{len(actions) - 1} more)"
