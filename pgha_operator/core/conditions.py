"""Status conditions and phase from one observation (pure), in the style of Kubernetes."""

from __future__ import annotations

from dataclasses import dataclass, replace

from pgha_operator.core.backup_health import backup_verdict
from pgha_operator.core.brief import REASON_CHARS, brief
from pgha_operator.core.facts.observed import Observed
from pgha_operator.core.facts.types import PatroniMember
from pgha_operator.core.plan import Desired, Plan
from pgha_operator.core.plan.catalog import catalog_diff
from pgha_operator.core.plan.reinit import REINIT_MAX_ATTEMPTS, STUCK_STATES, gave_up

PRIMARY_BACKEND = "primary"
REPLICAS_BACKEND = "replicas"


# Patroni states of a member that is on its way to running: bootstrap, cloning, (re)start.
# A cluster whose only faults are these is Progressing, not Degraded.
TRANSIENT_PATRONI_STATES = frozenset(
    {
        "initializing new cluster",
        "running custom bootstrap script",
        "starting after custom bootstrap",
        "creating replica",
        "starting",
        "restarting",
        "stopping",
    }
)


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool
    reason: str  # why it is false, or "ok"
    transient: bool = False  # false only because of work under way that ends by itself


def assess(
    desired: Desired, observed: Observed, certificate_days: float | None = None
) -> tuple[Condition, ...]:
    """`certificate_days`: days until the first of the cluster's certificates ends (the
    shell reads it from the state dir; None before any was issued)."""
    found = (
        _machines(desired, observed),
        _etcd(desired, observed),
        _patroni(desired, observed),
        _routing(desired, observed),
        *_catalog(desired, observed),
        *_backups(desired, observed),
    )
    # Reasons quote components' errors: no HTML page, no screenful (core/brief.py).
    found = tuple(
        c if c.status else replace(c, reason=brief(c.reason, REASON_CHARS)) for c in found
    )
    if certificate_days is None:
        return found
    renew_before = desired.cluster.spec.tls.renew_before_days
    return (*found, certificates_valid(certificate_days, renew_before))


def certificates_valid(days_left: float, renew_before_days: int) -> Condition:
    """False once the first certificate is inside its renewal window: the operator renews
    before that, so one still there means renewal keeps failing (or the CA itself ends)."""
    if days_left <= 0:
        return Condition(
            "CertificatesValid", False, f"Expired: a certificate ended {-days_left:.1f} days ago"
        )
    if days_left <= renew_before_days:
        return Condition(
            "CertificatesValid",
            False,
            f"Expiring: a certificate ends in {days_left:.1f} days and was not renewed "
            f"(renewBeforeDays {renew_before_days}); see the operator's log",
        )
    return Condition("CertificatesValid", True, "ok")


def phase(conditions: tuple[Condition, ...], plan: Plan, error: str | None = None) -> str:
    """Failed: blocked or a permanent error. Converged: all true, nothing to do. Progressing:
    the operator acts, or waits only on members that are bootstrapping or (re)starting.
    Degraded: something is wrong that neither the plan nor time will fix by itself."""
    if plan.blocked or error:
        return "Failed"
    failing = [c for c in conditions if not c.status]
    if not failing and plan.empty:
        return "Converged"
    if not plan.empty or all(c.transient for c in failing):
        return "Progressing"
    return "Degraded"


def _machines(desired: Desired, observed: Observed) -> Condition:
    broken = [f"{f.name}: {f.error}" for f in observed.machines.values() if f.error]
    if broken:
        return Condition("MachinesReady", False, "; ".join(sorted(broken)))
    missing = [m.name for m in desired.topology.machines if not observed.has_machine(m.name)]
    if missing:
        return Condition("MachinesReady", False, f"missing: {', '.join(missing)}")
    return Condition("MachinesReady", True, "ok")


def _etcd(desired: Desired, observed: Observed) -> Condition:
    facts = observed.etcd
    if not facts.reachable:
        return Condition("EtcdHealthy", False, f"unreachable: {facts.error or 'no answer'}")
    want = set(desired.topology.etcd)
    have = {m.name for m in facts.members}
    problems = []
    if want - have:
        problems.append(f"not members: {', '.join(sorted(want - have))}")
    if have - want:
        problems.append(f"unexpected members: {', '.join(sorted(have - want))}")
    learners = sorted(m.name for m in facts.members if m.is_learner)
    if learners:
        problems.append(f"learners: {', '.join(learners)}")
    unhealthy = sorted(have - set(facts.healthy))
    if unhealthy:
        problems.append(f"unhealthy: {', '.join(unhealthy)}")
    if problems:
        # A learner alone is a member being added: the plan promotes it once it caught up.
        only_learners = problems == [f"learners: {', '.join(learners)}"]
        return Condition("EtcdHealthy", False, "; ".join(problems), transient=only_learners)
    return Condition("EtcdHealthy", True, "ok")


def _patroni(desired: Desired, observed: Observed) -> Condition:
    facts = observed.patroni
    if not facts.reachable and facts.no_dcs_config:
        return _bootstrapping(facts.members)
    if not facts.reachable:
        return Condition("PatroniConverged", False, f"unreachable: {facts.error or 'no answer'}")
    members = {m.name: m for m in facts.members}
    problems = []
    transient = []  # problems that are bootstrap or (re)start under way
    leaders = [m for m in facts.members if m.role == "primary"]
    if len(leaders) != 1:
        problems.append(f"{len(leaders)} primaries in /cluster")
    for name in desired.topology.postgres:
        m = members.get(name)
        if m is None:
            problems.append(f"{name} not a member")
            continue
        healthy_state = "running" if m.role == "primary" else "streaming"
        if m.state != healthy_state:
            problems.append(f"{name}{' (primary)' if m.role == 'primary' else ''} is {m.state}")
            if m.state in STUCK_STATES:
                problems[-1] += _stuck_reason(observed, name)
            if m.state in TRANSIENT_PATRONI_STATES:
                transient.append(problems[-1])
        elif m.pending_restart:
            problems.append(f"{name} pending restart")
    extra = sorted(set(members) - set(desired.topology.postgres))
    if extra:
        problems.append(f"unexpected members: {', '.join(extra)}")
    if problems:
        reason = "; ".join(problems)
        return Condition("PatroniConverged", False, reason, transient=problems == transient)
    return Condition("PatroniConverged", True, "ok")


def _bootstrapping(members: tuple[PatroniMember, ...]) -> Condition:
    """Patroni answers but has no cluster configuration in etcd yet: the first member is
    bootstrapping the cluster (the others wait for it). On its way, unless a member is stuck."""
    stuck = sorted(f"{m.name} is {m.state}" for m in members if m.state in STUCK_STATES)
    if stuck:
        return Condition("PatroniConverged", False, f"bootstrap stuck: {'; '.join(stuck)}")
    starting = sorted(f"{m.name} is {m.state}" for m in members)
    detail = f" ({', '.join(starting)})" if starting else ""
    return Condition(
        "PatroniConverged", False, f"bootstrapping: no cluster configuration yet{detail}", True
    )


def _stuck_reason(observed: Observed, name: str) -> str:
    """Why a member cannot start, as read from its log, and what the operator does about it."""
    failure = observed.start_failures.get(name)
    if failure is None:
        return " (cause unknown: its log could not be read)"
    record = observed.reinits.get(name)
    if not failure.reinit_fixes:
        return f" ({failure.describe}; not reinitialised: a fresh copy would not fix it)"
    if gave_up(record):
        return f" ({failure.describe}; gave up after {REINIT_MAX_ATTEMPTS} reinitialisations)"
    return f" ({failure.describe})"


def _routing(desired: Desired, observed: Observed) -> Condition:
    members = observed.patroni.members
    leader = {m.name for m in members if m.role == "primary"}
    streaming = {m.name for m in members if m.role != "primary" and m.state == "streaming"}
    problems = []
    for lb in desired.topology.loadbalancers:
        facts = observed.haproxy.get(lb)
        if facts is None or not facts.reachable:
            problems.append(f"{lb}: stats unreachable")
            continue
        up: dict[str, set[str]] = {PRIMARY_BACKEND: set(), REPLICAS_BACKEND: set()}
        for s in facts.servers:
            if s.backend in up and s.status.startswith("UP"):
                up[s.backend].add(s.server)
        if up[PRIMARY_BACKEND] != leader:
            problems.append(f"{lb}: primary backend UP {sorted(up[PRIMARY_BACKEND])}")
        if up[REPLICAS_BACKEND] != streaming:
            problems.append(f"{lb}: replicas backend UP {sorted(up[REPLICAS_BACKEND])}")
    if problems:
        return Condition("RoutingCorrect", False, "; ".join(problems))
    return Condition("RoutingCorrect", True, "ok")


def _catalog(desired: Desired, observed: Observed) -> tuple[Condition, ...]:
    """Only for a manifest that declares roles or databases: false while one cannot be made
    to match (a drop refused, an encoding PostgreSQL cannot change), with the reason."""
    spec = desired.cluster.spec.postgres
    if not spec.roles and not spec.databases:
        return ()
    stuck = catalog_diff(spec, observed).stuck
    if stuck:
        reason = "; ".join(f"{r.kind} {r.name}: {r.reason}" for r in stuck)
        return (Condition("RolesAndDatabases", False, reason),)
    return (Condition("RolesAndDatabases", True, "ok"),)


def _backups(desired: Desired, observed: Observed) -> tuple[Condition, ...]:
    """Only with spec.backup: WAL reaches the repository (core/backup_health.py)."""
    verdict = backup_verdict(desired.cluster, observed)
    if verdict is None:
        return ()
    reason = "ok" if verdict.healthy else verdict.reason
    return (Condition("BackupsHealthy", verdict.healthy, reason, verdict.transient),)
