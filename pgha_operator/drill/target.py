"""The cluster a drill runs against, and the live view the fault injectors consult."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from psycopg.conninfo import make_conninfo

from pgha_operator.core.errors import OperatorError, PermanentError
from pgha_operator.core.plan import plan
from pgha_operator.core.render import APP_DATABASE, APP_USER, Secrets
from pgha_operator.core.render.haproxy import STATS_USER
from pgha_operator.core.spec import Cluster
from pgha_operator.core.topology import Topology
from pgha_operator.core.vip import client_address
from pgha_operator.drill.prober import Prober
from pgha_operator.drill.watch import Watcher
from pgha_operator.drill.writer import Writer
from pgha_operator.shell.clients.tls import ClientTls
from pgha_operator.shell.controller import Controller
from pgha_operator.shell.cycle import verdict
from pgha_operator.shell.providers.base import Provider
from pgha_operator.shell.switchover_assist import LeaseGuardSource


class DrillError(OperatorError):
    """The drill could not go on (no primary, a fault that could not be injected...)."""


class DrillRefused(PermanentError):
    """The drill must not run: drills not allowed, no --yes, a scenario the provider lacks."""


@dataclass
class Target:
    ctl: Controller  # observes only; never takes the lock
    secrets: Secrets
    # The lease of the operator the drill runs itself (None beside a running operator): a
    # switchover fault acts under it, as `pgha-operator switchover` does.
    lease: LeaseGuardSource | None = None

    @classmethod
    def of(cls, ctl: Controller) -> Target:
        secrets = ctl.state.secrets()
        if secrets is None:
            raise DrillRefused(
                f"cluster {ctl.cluster.name} has no state in {ctl.state_dir}: "
                "apply it first (pgha-operator apply)"
            )
        return cls(ctl, secrets)

    @property
    def cluster(self) -> Cluster:
        return self.ctl.cluster

    @property
    def topology(self) -> Topology:
        return self.ctl.topology  # built once per accepted manifest

    @property
    def provider(self) -> Provider:
        return self.ctl.provider

    @property
    def state_dir(self) -> Path:
        return self.ctl.state_dir

    @property
    def tls(self) -> ClientTls:
        """The operator's certificate and the cluster's CA (etcd requires a client cert)."""
        return self.ctl.state.client_tls()

    def lb_conninfo(self) -> str:
        topo = self.topology
        port = self.cluster.spec.load_balancer.ports.primary
        return self._conninfo(client_address(self.cluster.spec, topo), port)  # the VIP if any

    def node_conninfos(self) -> dict[str, str]:
        topo = self.topology
        return {n: self._conninfo(topo.address(n), topo.pg_port) for n in topo.postgres}

    def _conninfo(self, host: str, port: int) -> str:
        """As the application role (the load balancer refuses the superuser), over TLS
        verified against the cluster's CA, through HAProxy and on the nodes alike."""
        return make_conninfo(
            host=host,
            port=port,
            user=APP_USER,
            password=self.secrets.app_password,
            dbname=APP_DATABASE,
            sslmode="verify-full",
            sslrootcert=self.ctl.state.client_tls().ca,
            application_name="pgha-drill",
        )

    def lb_stats(self) -> tuple[str, tuple[str, str]]:
        """The first load balancer's stats page and its basic auth."""
        topo = self.topology
        port = self.cluster.spec.load_balancer.ports.stats
        url = f"http://{topo.address(topo.loadbalancers[0])}:{port}/"
        return url, (STATS_USER, self.secrets.stats_password)

    def rest_urls(self) -> dict[str, str]:
        topo = self.topology
        return {n: topo.rest_api_url(n) for n in topo.postgres}

    def etcd_urls(self) -> dict[str, str]:
        topo = self.topology
        return dict(zip(topo.etcd, topo.etcd_client_urls, strict=True))

    def phase(self) -> tuple[str, str]:
        """(phase, decision) as `status` would show them, without writing status."""
        desired, observed = self.ctl.observe(secrets=self.secrets)
        result = verdict(desired, observed, plan(desired, observed))
        return result.phase, result.decision


@dataclass
class Live:
    prober: Prober
    watcher: Watcher
    writer: Writer

    def primary(self) -> str:
        """The one node accepting writes now (asked directly)."""
        writable = self.prober.writable_now()
        if len(writable) != 1:
            raise DrillError(
                f"expected one node accepting writes, found {len(writable)}: "
                f"{', '.join(sorted(writable)) or 'none'}"
            )
        return next(iter(writable))

    @staticmethod
    def wait_for(predicate: Callable[[], bool], timeout: float, step: float = 0.1) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(step)
        return False
