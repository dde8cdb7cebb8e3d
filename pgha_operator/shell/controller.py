"""The controller: one cluster's loop, one cycle at a time (observe, plan, execute, status).

Every cycle starts from a fresh observation; file events and timers only wake it (loops.py).
Which manifest is in force is manifest.py's business, the state dir's files are state's.
Derived values are built once and reused while their inputs stay the same: the topology
and layouts per accepted manifest, the secrets while their file is unchanged, the desired
state per (manifest, secrets).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from pgha_operator.core import topology
from pgha_operator.core.actions import Action, Switchover
from pgha_operator.core.desired import build_desired
from pgha_operator.core.facts.observed import Observed
from pgha_operator.core.leadership import Role
from pgha_operator.core.passfile import passfiles
from pgha_operator.core.plan import Desired, Plan, plan
from pgha_operator.core.render import Secrets
from pgha_operator.core.rotation import effective_secrets
from pgha_operator.core.spec import Cluster, LoadedCluster
from pgha_operator.core.spec.catalog import declared_logins
from pgha_operator.core.status import build_status
from pgha_operator.core.tls import TlsMaterial
from pgha_operator.core.topology import Layout, Topology
from pgha_operator.shell import teardown
from pgha_operator.shell.certificate_hooks import CertificateHooks
from pgha_operator.shell.clients import Clients, RealClients
from pgha_operator.shell.cycle import CycleReport, Verdict, fencing_status, now, verdict
from pgha_operator.shell.execute import Env, Outcome, execute
from pgha_operator.shell.fencer import Fencer
from pgha_operator.shell.leadership import Leadership
from pgha_operator.shell.loops import apply_until_converged, run_forever
from pgha_operator.shell.manifest import ManifestInForce, load_one
from pgha_operator.shell.metrics import OperatorMetrics
from pgha_operator.shell.observe import observe
from pgha_operator.shell.operator_claim import OperatorClaim
from pgha_operator.shell.providers import make_provider
from pgha_operator.shell.providers.base import Provider
from pgha_operator.shell.role_passwords import settle_rotation
from pgha_operator.shell.state import LockHeld, StateDir
from pgha_operator.shell.state.scrape_targets import ScrapeTargets
from pgha_operator.shell.status_http import Snapshot

__all__ = ["Controller", "CycleReport", "load_one"]

log = structlog.get_logger("pgha-operator")


class Controller(OperatorClaim, CertificateHooks):
    """One cluster. `provider` and `clients` may be injected (tests drive the cycle against
    a fake world); by default the manifest's provider and the real clients are used. The
    lock and lease hooks are operator_claim.py's, the certificate hooks certificate_hooks.py's."""

    def __init__(
        self,
        paths: Sequence[str],
        state_dir: Path | None = None,
        cluster_name: str | None = None,
        progress: Callable[[Action], None] | None = None,
        fall_back_to_last_applied: bool = False,
        *,
        provider: Provider | None = None,
        clients: Clients | None = None,
        metrics: OperatorMetrics | None = None,
    ) -> None:
        self.manifest = ManifestInForce(paths, state_dir, cluster_name, fall_back_to_last_applied)
        self.state: StateDir = self.manifest.state
        self.state_dir = self.state.path
        self.progress = progress
        topo = topology.build(self.cluster)  # the one owner: handed to the provider
        self.provider = provider or make_provider(self.cluster, self.state_dir, topo)
        # The real clients log in with this cluster's operator certificate.
        self.clients = clients or RealClients(self.state.client_tls())
        self.user = self.provider.service_user
        self.binaries = self.provider.binaries
        self.events: deque[dict[str, str]] = deque(maxlen=20)
        self.fencer: Fencer | None = None  # the fast failover path; only `run` probes
        self.leadership: Leadership | None = None  # who acts: the flock and the etcd lease
        self.last_cycle: Snapshot | None = None  # what `run --listen` serves
        self.certificates_end: datetime | None = None  # the earliest certificate's end
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        # What /metrics serves (a private registry unless `run` shares its own); the loop
        # records each cycle and this operator's role (self.role) into it.
        self.metrics = (metrics or OperatorMetrics()).cluster(self.cluster.name)
        self.scrape_targets = ScrapeTargets(self.state_dir)
        self._layouts: tuple[int, Topology, Mapping[str, Layout]] | None = None
        self._remember_topology(topo)
        self._desired: tuple[tuple[int, Secrets, TlsMaterial | None], Desired] | None = None

    # --- the manifest in force ----------------------------------------------------------------

    @property
    def cluster(self) -> Cluster:
        return self.manifest.cluster

    @property
    def loaded(self) -> LoadedCluster:
        return self.manifest.loaded

    @property
    def paths(self) -> list[str]:
        return self.manifest.paths

    @property
    def manifest_error(self) -> str | None:
        return self.manifest.manifest_error

    @property
    def generation(self) -> int:
        return self.manifest.generation

    def reload_manifest(self) -> None:
        self.manifest.reload()

    # --- derived values, built once -----------------------------------------------------------

    @property
    def topology(self) -> Topology:
        return self._topology_and_layouts()[0]

    def _topology_and_layouts(self) -> tuple[Topology, Mapping[str, Layout]]:
        if self._layouts is None or self._layouts[0] != self.generation:
            self._remember_topology(topology.build(self.cluster))
        assert self._layouts is not None
        return self._layouts[1], self._layouts[2]

    def _remember_topology(self, topo: Topology) -> None:
        """Built once per accepted manifest; the provider finds new machines in it."""
        self.provider.follow(self.cluster, topo)
        layouts = {m.name: self.provider.layout(m.name) for m in topo.machines}
        self._layouts = (self.generation, topo, layouts)

    @property
    def layouts(self) -> Mapping[str, Layout]:
        return self._topology_and_layouts()[1]

    def secrets(self) -> Secrets:
        """The passwords in force (placeholders before the first apply): during a rotation,
        the old ones of roles whose ALTER ROLE is still pending."""
        return self._secrets_in_force(self.state.secrets_or_placeholder())[0]

    def _secrets_in_force(self, saved: Secrets) -> tuple[Secrets, dict[str, str] | None]:
        """While a rotation's ALTER ROLE is pending, the roles keep their old passwords, and
        so do the configs and the operator's logins (core/rotation.py)."""
        pending = self.state.pending_rotation()
        return effective_secrets(saved, pending), pending

    def desired(self, secrets: Secrets | None = None, tls: TlsMaterial | None = None) -> Desired:
        secrets = secrets or self.secrets()
        tls = tls or self.tls()
        key = (self.generation, secrets, tls)
        if self._desired is None or self._desired[0] != key:
            desired, _ = build_desired(
                self.cluster,
                self.layouts,
                secrets,
                self.binaries,
                self.user,
                self.provider.service_manager,
                tls,
            )
            self._desired = (key, desired)
        return self._desired[1]

    def env(self, desired: Desired, secrets: Secrets | None = None) -> Env:
        return Env(
            self.cluster,
            desired.topology,
            self.provider,
            self.binaries,
            secrets=secrets or self.secrets(),
            check_ports=self.provider.kind == "local",  # only local machines share this host
            clients=self.clients,
            lease=self.leadership,
        )

    # --- one cycle ----------------------------------------------------------------------------

    def observe(
        self,
        desired: Desired | None = None,
        secrets: Secrets | None = None,
        tls: TlsMaterial | None = None,
    ) -> tuple[Desired, Observed]:
        secrets = secrets or self.secrets()
        desired = desired or self.desired(secrets, tls)
        reinits = self.state.reinits()
        down = self._down()
        observed = observe(
            desired, self.provider, secrets, down=down, reinits=reinits, clients=self.clients
        )
        for _ in range(2):
            # A drill marks a machine down, then kills it: a mark written while we looked
            # may hide a death we saw, so look again with it.
            now_down = self._down()
            if now_down == down:
                break
            down = now_down
            observed = observe(
                desired, self.provider, secrets, down=down, reinits=reinits, clients=self.clients
            )
        return desired, observed

    def _down(self) -> frozenset[str]:
        held = self.fencer.holding() if self.fencer else frozenset()
        return self.state.down() | held

    def cycle(self, act: bool = True) -> CycleReport:
        """One pass. `act=False` (status) reads only: no secrets made, nothing written."""
        tls = self.tls(act)  # first: it tells a cluster made before TLS from a new one
        logins = declared_logins(self.cluster.spec.postgres.roles)
        saved = (
            self.state.load_or_create_secrets(logins)
            if act
            else self.state.secrets_or_placeholder()
        )
        secrets, pending = self._secrets_in_force(saved)
        desired, observed = self.observe(secrets=secrets, tls=tls)
        if self.leadership is not None:  # whether an etcd quorum can run at all
            self.leadership.saw(observed, desired.topology.etcd)
        act = self._may_act_now() if act else False
        if (
            act
            and pending is not None
            and settle_rotation(self.state, observed, saved, pending, self.clients)
        ):
            self.event("rotated passwords set on the primary; configs follow")
            secrets = saved  # every role has its new password: the configs may carry it
            desired = self.desired(secrets, tls)
        the_plan = plan(desired, observed)
        acted = None
        if act:
            self.state.save_last_applied(self.cluster)
            stats_port = desired.cluster.spec.load_balancer.ports.stats
            self.scrape_targets.write(desired.topology, stats_port)  # for Prometheus' file_sd
            self.state.sync_passfiles(passfiles(self.cluster, desired.topology, secrets))
            acted = self._act(the_plan, desired, observed, secrets)
            # count reinitialisations just done; forget members healthy again
            done = acted.done if acted else ()
            self.state.record_reinits(observed, done, time.time())
        result = acted or verdict(desired, observed, the_plan, None, self.certificate_days())
        if self.leadership is not None and self.leadership.role is Role.STANDBY:
            result = replace(result, decision=f"standby: {self.leadership.decision.reason}")
        if self.fencer:
            self.fencer.update(desired, observed)
        status = build_status(
            desired, observed, result.conditions, result.phase, result.decision, self._extra()
        )
        if act:  # only the operator that acts owns status.json; `status` just reads
            self.state.write_status(status)
        return CycleReport(
            the_plan,
            observed,
            result.decision,
            result.phase,
            result.phase == "Converged",
            result.error,
            result.permanent,
            status,
            result.retry_after,
            result.done,
            result.failed,
        )

    def _act(
        self, the_plan: Plan, desired: Desired, observed: Observed, secrets: Secrets
    ) -> Verdict | None:
        """Execute the plan; the verdict of the outcome (None when there was nothing to do)."""
        if not the_plan.actions:
            return None
        switching = any(isinstance(a, Switchover) for a in the_plan.actions)
        if switching:
            try:
                self.state.switchover_lock.acquire("operator")
            except LockHeld as exc:
                waiting = f"waiting: a switchover by {exc.holder} is in progress"
                checked = verdict(desired, observed, the_plan, None, self.certificate_days())
                return replace(checked, decision=waiting)
        try:
            outcome: Outcome = execute(
                the_plan.actions, self.env(desired, secrets), self.progress, self.may_act
            )
        finally:
            if switching:
                self.state.switchover_lock.release()
        for action in outcome.done:
            self.event(action.describe)
        return verdict(desired, observed, the_plan, outcome, self.certificate_days())

    def _extra(self) -> dict[str, Any]:
        extra: dict[str, Any] = {
            "observedGeneration": self.generation,
            "manifestError": self.manifest_error,
            "events": list(self.events),
            "updatedAt": now(),
            "stateDir": str(self.state_dir),
            "fencing": fencing_status(self.cluster, self.provider.can_fence, self.fencer),
        }
        if self.leadership is not None:
            extra["operator"] = self.leadership.status()
        if self.manifest.state_error:
            extra["stateError"] = self.manifest.state_error
        certificates = self.certificates_status()
        if certificates is not None:
            extra["certificates"] = certificates
        return extra

    def start_fencer(self) -> Fencer:
        """The fast failover path, for `run`: probes the primary between cycles."""
        self.fencer = Fencer(
            self.desired(),
            self.provider,
            clients=self.clients,
            lease=self.leadership,
            metrics=self.metrics,
            journal=self.state.record_fence,
        )
        return self.fencer

    def event(self, message: str) -> None:
        self.events.append({"time": now(), "message": message})

    def destroy(self, on_left: Callable[[str, list[str]], None] | None = None) -> list[str]:
        """Stop every service on its machine (load balancers first, etcd last), remove the
        machines (waiting until they are gone), then the state dir: shell/teardown.py."""
        removed = teardown.teardown(self.provider, on_left)
        self.unlock()
        teardown.remove_state_dir(self.state_dir)
        return removed

    # --- loops --------------------------------------------------------------------------------

    def apply(
        self, timeout: float, on_cycle: Callable[[CycleReport], None] | None = None
    ) -> CycleReport:
        """Reconcile until converged or the timeout; stops early on a permanent error."""
        return apply_until_converged(self, timeout, on_cycle)

    def run(self, stop: threading.Event) -> None:
        """Forever: resync every few seconds, wake at once when a manifest file changes."""
        run_forever(self, stop)
