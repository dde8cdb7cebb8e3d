"""The operator's Prometheus metrics, served as GET /metrics by `run --listen`.

One `OperatorMetrics` per operator process holds its own CollectorRegistry (not the
library's global one: tests build many operators in one process). Every series has a
`cluster` label; `ClusterMetrics` is one cluster's view, with its label children bound once
so that recording a converged cycle costs a few microseconds. README.md lists the series.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from pgha_operator.core.actions import Action, Switchover
from pgha_operator.shell.status_http import Response

if TYPE_CHECKING:
    from pgha_operator.shell.cycle import CycleReport

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
PHASES = ("Converged", "Progressing", "Degraded", "Failed")
CONDITIONS = ("MachinesReady", "EtcdHealthy", "PatroniConverged", "RoutingCorrect")
# (CertificatesValid and any other condition get their series when first seen)
ROLES = ("leader", "standby")
# taken: machine powered off; refused: a guard said no; failed: powering off failed;
# off: fencing is off or the provider cannot fence (the leader lease decides, by design)
FENCING_DECISIONS = ("taken", "refused", "failed", "off")
CYCLE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
PROBE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5)


class OperatorMetrics:
    """Every metric family of one operator process, in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        c = ("cluster",)
        self.cycles = Counter("pgha_cycles", "Reconcile cycles completed", c, registry=r)
        self.cycle_seconds = Histogram(
            "pgha_cycle_duration_seconds",
            "Wall time of one reconcile cycle (observe, plan, execute, status)",
            c,
            buckets=CYCLE_BUCKETS,
            registry=r,
        )
        self.last_cycle = Gauge(
            "pgha_last_cycle_timestamp_seconds", "Unix time the last cycle ended", c, registry=r
        )
        self.actions = Counter(
            "pgha_actions", "Actions executed, by type and outcome (ok or failed)",
            (*c, "action", "outcome"), registry=r,
        )  # fmt: skip
        self.phase = Gauge(
            "pgha_cluster_phase", "1 for the cluster's current phase, 0 for the others",
            (*c, "phase"), registry=r,
        )  # fmt: skip
        self.condition = Gauge(
            "pgha_cluster_condition", "1 when the condition holds, 0 when it does not",
            (*c, "condition"), registry=r,
        )  # fmt: skip
        self.role = Gauge(
            "pgha_operator_role", "1 for this operator's role for the cluster (leader or standby)",
            (*c, "role"), registry=r,
        )  # fmt: skip
        self.fencing = Counter(
            "pgha_fencing_decisions",
            "Fencing decisions after the primary stopped answering: taken, refused, failed, off",
            (*c, "decision"), registry=r,
        )  # fmt: skip
        self.primary_changes = Counter(
            "pgha_primary_changes",
            "Changes of the observed primary (failovers and switchovers alike)", c, registry=r,
        )  # fmt: skip
        self.switchovers = Counter(
            "pgha_switchovers", "Switchovers the operator itself performed", c, registry=r
        )
        self.primaries = Gauge(
            "pgha_primaries", "Nodes answering Patroni's GET /primary with 200", c, registry=r
        )
        self.replica_lag = Gauge(
            "pgha_replica_lag_bytes", "Replication lag per replica as Patroni reports it",
            (*c, "member"), registry=r,
        )  # fmt: skip
        self.probe_seconds = Histogram(
            "pgha_probe_duration_seconds", "Latency of the fencer's GET /primary probes",
            c, buckets=PROBE_BUCKETS, registry=r,
        )  # fmt: skip

    def cluster(self, name: str, role: str = "leader") -> ClusterMetrics:
        return ClusterMetrics(self, name, role)

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)


class ClusterMetrics:
    """One cluster's series: what the loop and the fencer record."""

    def __init__(self, families: OperatorMetrics, cluster: str, role: str) -> None:
        self.families = families
        self.name = cluster
        f = families
        self._cycles = f.cycles.labels(cluster)
        self._cycle_seconds = f.cycle_seconds.labels(cluster)
        self._last_cycle = f.last_cycle.labels(cluster)
        self._phase = {p: f.phase.labels(cluster, p) for p in PHASES}
        self._condition = {t: f.condition.labels(cluster, t) for t in CONDITIONS}
        self._role = {r: f.role.labels(cluster, r) for r in ROLES}
        self._fencing = {d: f.fencing.labels(cluster, d) for d in FENCING_DECISIONS}
        self._primary_changes = f.primary_changes.labels(cluster)
        self._switchovers = f.switchovers.labels(cluster)
        self._primaries = f.primaries.labels(cluster)
        self._probe_seconds = f.probe_seconds.labels(cluster)
        self._lagging: set[str] = set()  # members with a lag series
        self.cycles = 0
        self.primary: str | None = None  # the last primary seen, for primary_changes
        self.set_role(role)

    def set_role(self, role: str) -> None:
        for name, child in self._role.items():
            child.set(1 if name == role else 0)

    def record_cycle(self, report: CycleReport, seconds: float, ended_at: float) -> None:
        """After every cycle: its duration, phase, conditions, actions and the primary."""
        self.cycles += 1
        self._cycles.inc()
        self._cycle_seconds.observe(seconds)
        self._last_cycle.set(ended_at)
        self._set_phase(report.phase)
        self._set_conditions(report.status.get("conditions", ()))
        self._count_actions(report.done, report.failed)
        patroni = report.observed.patroni
        self._primaries.set(len(patroni.primaries))
        self._follow_primary(patroni.primaries)
        self._set_lag({m.name: m.lag_bytes for m in patroni.replicas})

    def record_probe(self, seconds: float) -> None:
        self._probe_seconds.observe(seconds)

    def record_fencing(self, decision: str) -> None:
        self._fencing[decision].inc()

    def _set_phase(self, phase: str) -> None:
        if phase not in self._phase:  # a phase this module does not know yet still shows
            self._phase[phase] = self.families.phase.labels(self.name, phase)
        for name, child in self._phase.items():
            child.set(1 if name == phase else 0)

    def _set_conditions(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            kind = row["type"]
            child = self._condition.get(kind)
            if child is None:
                child = self._condition[kind] = self.families.condition.labels(self.name, kind)
            child.set(1 if row["status"] == "True" else 0)

    def _count_actions(self, done: Iterable[Action], failed: Action | None) -> None:
        for action in done:
            self.families.actions.labels(self.name, type(action).__name__, "ok").inc()
            if isinstance(action, Switchover):
                self._switchovers.inc()
        if failed is not None:
            self.families.actions.labels(self.name, type(failed).__name__, "failed").inc()

    def _follow_primary(self, primaries: frozenset[str]) -> None:
        """One primary that differs from the last one seen: a failover or a switchover.
        None or two primaries say nothing about who leads; the last one is kept."""
        if len(primaries) != 1:
            return
        (primary,) = primaries
        if self.primary is not None and primary != self.primary:
            self._primary_changes.inc()
        self.primary = primary

    def _set_lag(self, lags: Mapping[str, int | None]) -> None:
        known = {name: lag for name, lag in lags.items() if lag is not None}
        for gone in self._lagging - known.keys():
            self.families.replica_lag.remove(self.name, gone)
        for name, lag in known.items():
            self.families.replica_lag.labels(self.name, name).set(lag)
        self._lagging = set(known)


def metrics_response(metrics: OperatorMetrics) -> Response:
    """The `/metrics` route of `run --listen`."""
    return Response(200, metrics.exposition().decode(), CONTENT_TYPE)
