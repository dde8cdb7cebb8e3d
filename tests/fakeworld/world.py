"""FakeWorld: machines, etcd, Patroni + PostgreSQL and HAProxy in memory, one cycle at a time.

The operator's real observe/plan/execute act on it through the fake provider, hosts and
clients; `tick()` lets one cycle of time pass (members finish starting, Patroni runs its HA
loop, keys expire). Nothing here writes the desired state: components behave by the files
they loaded, as the real ones do.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pgha_operator.core import topology
from pgha_operator.core.desired import build_desired
from pgha_operator.core.plan import Desired
from pgha_operator.core.render import Binaries, Secrets
from pgha_operator.core.services import ServiceState
from pgha_operator.core.spec import Cluster
from pgha_operator.core.topology import Layout
from pgha_operator.shell.hosts.base import HostError
from tests.fakeworld.etcd import EtcdModel
from tests.fakeworld.faults import Faults
from tests.fakeworld.machines import FakeMachine, FakeProvider, Proc, fhs_layout
from tests.fakeworld.patroni import PatroniModel
from tests.fakeworld.patroni_api import PatroniApi

if TYPE_CHECKING:
    from tests.fakeworld.clients import FakeClients

SECRETS = Secrets(
    superuser_password="fake-superuser",
    replication_password="fake-replication",
    admin_password="fake-admin",
    rest_password="fake-rest",
    app_password="fake-app",
    stats_password="fake-stats",
)


@dataclass(frozen=True)
class StaleConfig:
    machine: str
    service: str
    path: str  # the file on disk differs from what the running service loaded


class FakeWorld:
    def __init__(self, cluster: Cluster, faults: Faults | None = None) -> None:
        self.cluster = cluster
        self.binaries = Binaries()
        self.layout: Layout = fhs_layout(cluster.name)
        self.faults = faults or Faults()
        self.machines: dict[str, FakeMachine] = {}
        self.time = 0
        self.etcd = EtcdModel(self)
        self.patroni = PatroniModel(self)
        self.patroni_api = PatroniApi(self.patroni)
        self.provider = FakeProvider(self)
        self.secrets = SECRETS

    @classmethod
    def for_cluster(cls, cluster: Cluster, seed: int = 0, fault_rate: float = 0.0) -> FakeWorld:
        """An empty world (no machines yet) for `cluster`: the public entry point."""
        return cls(cluster, Faults(seed=seed, rate=fault_rate))

    def copy(self) -> FakeWorld:
        return copy.deepcopy(self)

    # ------------------------------------------------------------------ the operator's inputs

    def desired(self, cluster: Cluster | None = None) -> Desired:
        """What the controller would build for `cluster` (default: the world's) on this
        world's provider."""
        cluster = cluster or self.cluster
        layouts = {m.name: self.layout for m in topology.build(cluster).machines}
        desired, _ = build_desired(
            cluster,
            layouts,
            self.secrets,
            self.binaries,
            self.provider.service_user,
            self.provider.service_manager,
        )
        return desired

    def clients(self) -> FakeClients:
        from tests.fakeworld.clients import FakeClients  # it imports this module

        return FakeClients(self)

    # ------------------------------------------------------------------ time

    def tick(self) -> None:
        """One cycle of time passes."""
        self.time += 1
        for m in self.machines.values():
            for proc in list(m.procs.values()):
                if proc.state != ServiceState.RUNNING or m.frozen:
                    continue
                if proc.dies:
                    proc.state = ServiceState.FAILED
                    self.on_stop(m.name, proc, graceful=False)
                    continue
                proc.age += 1
        self.etcd.tick()
        self.patroni.tick()

    # ------------------------------------------------------------------ hooks from machines

    def reachable(self, name: str) -> FakeMachine:
        m = self.machines.get(name)
        if m is None:
            raise HostError(f"{name}: no such machine")
        if not m.powered or m.frozen:
            raise HostError(f"{name}: ssh: connect timed out")
        return m

    def on_start(self, machine: str, proc: Proc) -> None:
        if proc.state != ServiceState.RUNNING:
            return
        m = self.machines[machine]
        if proc.service == "etcd":
            self.etcd.on_start(m, proc)
        elif proc.service == "patroni":
            self.patroni.on_start(m, proc)

    def on_stop(self, machine: str, proc: Proc, graceful: bool) -> None:
        if proc.service == "patroni" and machine in self.machines:
            self.patroni.on_stop(self.machines[machine], proc, graceful)

    def on_reload(self, machine: str, proc: Proc) -> None:
        if proc.service == "patroni":
            self.patroni.on_reload(self.machines[machine], proc)
        # etcd cannot reload; HAProxy re-parses `loaded` on every stats request

    def on_destroy(self, machine: str) -> None:
        return None  # its files and processes went with it

    # ------------------------------------------------------------------ truth, for assertions

    def running(self) -> Iterator[tuple[FakeMachine, Proc]]:
        for m in self.machines.values():
            for proc in m.procs.values():
                if proc.state == ServiceState.RUNNING and m.powered:
                    yield m, proc

    def stale_configs(self) -> list[StaleConfig]:
        """Running services whose config or definition on disk is not what they loaded."""
        out = []
        for m, proc in self.running():
            definition = f"{self.layout.services_dir}/{proc.service}.json"
            if not _same_config(m.files.get(proc.config_path), proc.loaded):
                out.append(StaleConfig(m.name, proc.service, proc.config_path))
            elif not _same_config(m.files.get(definition), proc.definition):
                out.append(StaleConfig(m.name, proc.service, definition))
        return out

    def true_primaries(self) -> list[str]:
        return [n.name for _, n in self.patroni.nodes() if self.patroni_api.is_primary(n)]

    def etcd_quorum(self) -> bool:
        return self.etcd.quorum()


def _same_config(a: bytes | None, b: bytes | None) -> bool:
    """Equal to the service that reads them: trailing blank lines mean nothing to YAML,
    JSON or haproxy.cfg (the plan appends one until a reload or restart picked it up)."""
    return (a or b"").rstrip() == (b or b"").rstrip() and (a is None) == (b is None)
