"""plan(desired, observed) -> the ordered actions that move the cluster toward the manifest.

PURE: no I/O, two immutable values in, one immutable Plan out. A converged observation
plans nothing. Ordering follows the dependency chain: machines, files, removals, etcd
membership, service starts, Patroni's DCS config, rolling restarts, roles, declared roles
and databases (plan/catalog.py). Safety rules
(DESIGN §2) are enforced here, so they are unit-testable.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import replace

from pgha_operator.core.actions import (
    Action,
    CreateDatabase,
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
from pgha_operator.core.plan.backup import backup_actions
from pgha_operator.core.plan.catalog import catalog_diff
from pgha_operator.core.plan.etcd import etcd_has_quorum, etcd_membership
from pgha_operator.core.plan.patroni import (
    config_patch,
    removals,
    rolling_restart,
    switchover_candidate,
)
from pgha_operator.core.plan.reinit import reinitialize_stuck
from pgha_operator.core.render import ADMIN_USER, APP_DATABASE, APP_USER, POOLER_USER
from pgha_operator.core.render.context import DesiredFile
from pgha_operator.core.render.tls import CA_FILE
from pgha_operator.core.services import ServiceState

__all__ = ["Desired", "Plan", "content_hash", "etcd_has_quorum", "plan"]

# Services that cannot re-read their configuration: a changed file means a restart.
RESTART_ON_CHANGE = frozenset({"etcd"})
# Services that load their certificate and key from disk on every TLS handshake (etcd 3.4:
# pkg/transport's GetCertificate/GetClientCertificate): a renewed pair is just written.
# Their CA pool is read once at start, so a changed CA still takes a restart.
RELOADS_CERTIFICATE_PER_HANDSHAKE = frozenset({"etcd"})
# Start order: the DCS first, then the databases, then the router in front of them, then
# the VIP in front of the routers.
START_ORDER = {"etcd": 0, "patroni": 1, "pgbouncer": 2, "haproxy": 3, "keepalived": 4}


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

    actions += _files(desired, observed, settling, handing_over, membership.busy)
    actions += leaving
    actions += membership.actions
    actions += _service_starts(desired, observed, settling)
    if not any(isinstance(a, StartService) for a in actions):
        actions += config_patch(desired, observed)
        actions += rolling_restart(desired, observed)
        actions += reinitialize_stuck(desired, observed)
    actions += _roles(observed, pooler=desired.cluster.spec.pooler.enabled)
    actions += catalog_diff(desired.cluster.spec.postgres, observed).actions
    actions += backup_actions(desired, observed)
    # A wait is a barrier: whatever else can be done this cycle goes before it.
    ordered = [a for a in actions if not isinstance(a, WaitFor)]
    ordered += [a for a in actions if isinstance(a, WaitFor)][:1]
    return Plan(tuple(ordered), _decision(ordered))


def _files(
    desired: Desired,
    observed: Observed,
    settling: frozenset[str],
    handing_over: bool,
    etcd_busy: bool,
) -> list[Action]:
    """Changed files. One whose reader is stopped is just written (read when it starts); one
    whose reader runs is picked up by a reload or, if the reader cannot reload (etcd) or
    the file is its definition, by a restart, one per cycle: a file is never written
    without its pickup, or the old config would keep running unnoticed."""
    actions: list[Action] = []
    pickups: dict[tuple[str, str], list[WriteFile]] = {}
    reload_why: dict[tuple[str, str], str] = {}
    restart_why: dict[tuple[str, str], str] = {}
    for f in desired.files:
        if (f.service == "etcd" and f.machine in settling and not f.certificate) or (
            f.service == "haproxy" and handing_over
        ):
            continue  # a joining member's config comes from the join step (its
            # certificates do not: written first, they are there when it starts); HAProxy
            # keeps routing to a primary that hands over until the switchover is done
        have = observed.files.get((f.machine, f.path))
        if have == content_hash(f.content):
            continue
        reason = "missing" if have is None else "changed"
        write = WriteFile(f.machine, f.path, f.content, f.mode, f.owner, reason)
        if f.defines and _running(observed, f.machine, f.defines):
            key = (f.machine, f.defines)
            restart_why.setdefault(key, f"its definition {reason}")
        elif _read_per_handshake(f):
            actions.append(write)  # the next handshake reads it; no restart, no downtime
            continue
        elif f.service and _running(observed, f.machine, f.service):
            key = (f.machine, f.service)
            why = restart_why if f.service in RESTART_ON_CHANGE else reload_why
            why.setdefault(key, f"{f.path} {reason}")
        else:
            actions.append(write)
            continue
        pickups.setdefault(key, []).append(write)
    for key, files in pickups.items():
        if key not in restart_why:
            actions += _picked_up(files, ReloadService(*key, reload_why[key]))
    held = {key: files for key, files in pickups.items() if key in restart_why}
    return actions + _one_restart(held, restart_why, desired, observed, etcd_busy)


# Appended to a file until its reader picked it up: a no-op to YAML, JSON and haproxy.cfg.
PICKUP_PENDING = "\n"


def _picked_up(writes: list[WriteFile], pickup: ReloadService | RestartService) -> list[Action]:
    """Write each file with PICKUP_PENDING, reload or restart its reader, then (the pickup
    action does it) write the files as rendered. Until the pickup is done the files differ
    from the rendered ones, so the next cycle plans it again: a reload or restart lost after
    its write (the call failed, the operator died) is never forgotten. Dying between the
    pickup and the final write costs one more reload or restart, never a lost one."""
    pending = [
        replace(
            w, content=w.content + PICKUP_PENDING, reason=f"{w.reason}, {_verb(pickup)} pending"
        )
        for w in writes
    ]
    return [*pending, replace(pickup, then_write=tuple(writes))]


def _verb(pickup: ReloadService | RestartService) -> str:
    return "reload" if isinstance(pickup, ReloadService) else "restart"


def _read_per_handshake(f: DesiredFile) -> bool:
    return (
        f.certificate
        and f.service in RELOADS_CERTIFICATE_PER_HANDSHAKE
        and posixpath.basename(f.path) != CA_FILE
    )


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
    restart = RestartService(machine, service, reasons[(machine, service)])
    return _picked_up(held[(machine, service)], restart)


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
    return [
        (name, "etcd")
        for name, fact in sorted(observed.machines.items())
        if name not in desired.services
        and fact.exists
        and name not in observed.down
        and desired.topology.etcd_peer_url_at(fact.address) in voters
        and observed.service(name, "etcd") != ServiceState.RUNNING
    ]


def _roles(observed: Observed, *, pooler: bool = False) -> list[Action]:
    """Roles Patroni does not create (Patroni 4 ignores bootstrap.users), and the app's
    database, owned by its role (so the role is made first, in the same cycle); with the
    pooler on, its role (made after its auth_query function is in every database).
    The app's role and database come first: until they exist no client can write (the
    first write of a new cluster waits on them), the admin role can follow."""
    leader = observed.patroni.leader
    if observed.roles is None or leader is None:
        return []
    at = (leader.host, leader.port)
    actions: list[Action] = []
    if APP_USER not in observed.roles:
        actions.append(CreateRole(APP_USER, *at))
    if observed.databases is not None and APP_DATABASE not in observed.databases:
        actions.append(CreateDatabase(APP_DATABASE, APP_USER, *at))
    if ADMIN_USER not in observed.roles:
        actions.append(CreateRole(ADMIN_USER, *at))
    if pooler and POOLER_USER not in observed.roles:
        actions.append(CreateRole(POOLER_USER, leader.host, leader.port))
    return actions


def _decision(actions: list[Action]) -> str:
    if not actions:
        return "converged"
    first = actions[0].describe
    return first if len(actions) == 1 else f"{first} (+{len(actions) - 1} more)"
