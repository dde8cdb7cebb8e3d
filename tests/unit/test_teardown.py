"""Teardown stops the services each machine says it has, through that machine's host, one
kind at a time across the cluster (load balancers first, etcd last), then removes the
machines and returns only when none is left. Fakes; the real thing runs in
tests/integration/test_local_host.py and tests/lab/test_nspawn_lab.py."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from structlog.testing import capture_logs

from pgha_operator.core.errors import OperatorError
from pgha_operator.core.facts.observed import MachineFact
from pgha_operator.shell.hosts.base import HostError
from pgha_operator.shell.teardown import stop_order, teardown


@dataclass
class FakeService:
    host: FakeHost
    name: str

    def stop(self) -> None:
        if self.name in self.host.broken:
            raise HostError(f"{self.host.name}: cannot stop {self.name}")
        self.host.log.append(("stop", self.host.name, self.name))


@dataclass
class FakeHost:
    name: str
    services: list[str]
    log: list[tuple[str, ...]]
    broken: set[str] = field(default_factory=set)
    unreachable: bool = False

    def installed_services(self) -> list[str]:
        if self.unreachable:
            raise HostError(f"{self.name}: unreachable")
        return self.services

    def service(self, name: str) -> FakeService:
        return FakeService(self, name)


class FakeProvider:
    """Machines whose services live on the machine only (like nspawn, vagrant, ssh): the
    operator's own disk knows nothing of them."""

    def __init__(self, machines: dict[str, list[str]], down: frozenset[str] = frozenset()):
        self.log: list[tuple[str, ...]] = []
        self.hosts = {n: FakeHost(n, s, self.log) for n, s in machines.items()}
        self.down = down
        self.left: set[str] = set(machines)
        self.stuck: set[str] = set()

    def machines(self) -> list[MachineFact]:
        return [MachineFact(n, n not in self.down, None) for n in sorted(self.left)]

    def host(self, name: str) -> FakeHost:
        assert name not in self.down, "a stopped machine cannot be asked anything"
        return self.hosts[name]

    def destroy(self, name: str) -> None:
        self.log.append(("destroy", name))
        if name not in self.stuck:
            self.left.discard(name)


DEMO = {
    "etcd1": ["etcd"],
    "node1": ["etcd", "patroni"],
    "node2": ["etcd", "patroni"],
    "haproxy": ["haproxy"],
}


def test_services_stop_on_their_machines_lb_first_etcd_last_then_machines_go() -> None:
    provider = FakeProvider(DEMO)
    assert teardown(provider) == ["etcd1", "haproxy", "node1", "node2"]  # type: ignore[arg-type]
    stops = [e[1:] for e in provider.log if e[0] == "stop"]
    assert stops == [
        ("haproxy", "haproxy"),
        ("node1", "patroni"),
        ("node2", "patroni"),
        ("etcd1", "etcd"),
        ("node1", "etcd"),
        ("node2", "etcd"),
    ]
    first_destroy = next(i for i, e in enumerate(provider.log) if e[0] == "destroy")
    assert first_destroy == len(stops)  # every service stopped before any machine goes
    assert provider.left == set()


def test_a_failed_stop_or_an_unreachable_machine_does_not_stop_the_teardown() -> None:
    provider = FakeProvider(DEMO, down=frozenset({"node2"}))
    provider.hosts["node1"].broken = {"patroni"}
    provider.hosts["etcd1"].unreachable = True
    with capture_logs() as logs:
        removed = teardown(provider)  # type: ignore[arg-type]
    assert removed == ["etcd1", "haproxy", "node1", "node2"]
    assert [(e["machine"], e["log_level"]) for e in logs] == [
        ("etcd1", "warning"),
        ("node1", "warning"),
    ]
    stops = [e[1:] for e in provider.log if e[0] == "stop"]
    assert stops == [("haproxy", "haproxy"), ("node1", "etcd")]


def test_teardown_fails_while_a_machine_is_still_there() -> None:
    provider = FakeProvider(DEMO)
    provider.stuck = {"node2"}
    with pytest.raises(OperatorError, match="node2"):
        teardown(provider)  # type: ignore[arg-type]


def test_stop_order_puts_unknown_services_before_patroni() -> None:
    assert stop_order({"etcd", "patroni", "pgbouncer", "haproxy"}) == [
        "haproxy",
        "pgbouncer",
        "patroni",
        "etcd",
    ]
