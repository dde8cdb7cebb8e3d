"""What makes the idle loop cheap without making it see less: the etcd data dirs are looked
at only where plan reads them, and the roles read keeps its PostgreSQL connection."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import psycopg
import pytest

from pgha_operator.core.actions import CreateDatabase, CreateRole
from pgha_operator.core.facts.observed import MachineFact
from pgha_operator.core.facts.types import EtcdFacts
from pgha_operator.core.render import ADMIN_USER, APP_DATABASE, APP_USER, Binaries
from pgha_operator.core.services import ServiceState
from pgha_operator.shell.clients import RealClients
from pgha_operator.shell.clients import postgres as pg
from pgha_operator.shell.execute import Env, execute
from pgha_operator.shell.hosts.base import CommandResult
from pgha_operator.shell.observe import observe, observe_roles
from tests.unit.test_plan import converged, demo_desired
from tests.unit.test_shell_clients import DEMO, SECRETS, FakeClients, NoMachines


@dataclass
class Host:
    name: str
    world: World

    def read(self, path: str) -> bytes | None:
        return None

    def run(self, argv: Any, **_: Any) -> CommandResult:
        self.world.commands.append((self.name, tuple(argv)))
        return CommandResult(tuple(argv), 0, "", "")

    def service(self, name: str) -> Service:
        return Service(self.world.states.get((self.name, name), ServiceState.RUNNING))


@dataclass
class Service:
    current: ServiceState

    def state(self) -> ServiceState:
        return self.current


@dataclass
class World:
    names: list[str]
    states: dict[tuple[str, str], ServiceState] = field(default_factory=dict)
    commands: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    kind = "fake"
    can_fence = False

    def machines(self) -> list[MachineFact]:
        return [MachineFact(n, True) for n in self.names]

    def host(self, name: str) -> Host:
        return Host(name, self)


@dataclass
class EtcdAnswers(FakeClients):
    etcd_facts: EtcdFacts = field(default_factory=lambda: EtcdFacts(reachable=False))

    def observe_etcd(self, client_urls: Any) -> EtcdFacts:
        return self.etcd_facts


def looked_at(world: World, etcd: EtcdFacts) -> set[str]:
    desired = demo_desired()
    observed = observe(desired, world, SECRETS, clients=EtcdAnswers(etcd_facts=etcd))
    asked = {name for name, argv in world.commands if argv[:2] == ("test", "-d")}
    assert set(observed.etcd_data) == asked
    return asked


def test_running_started_members_data_dirs_are_not_asked() -> None:
    desired = demo_desired()
    world = World([m.name for m in desired.topology.machines])
    assert looked_at(world, converged(desired).etcd) == set()


def test_a_stopped_member_an_unlisted_one_and_no_member_list_are_asked() -> None:
    desired = demo_desired()
    healthy = converged(desired).etcd
    world = World([m.name for m in desired.topology.machines])
    world.states[("etcd2", "etcd")] = ServiceState.FAILED
    assert looked_at(world, healthy) == {"etcd2"}  # lost data? plan replaces the member

    world = World(world.names)
    unlisted = replace(healthy, members=tuple(m for m in healthy.members if m.name != "etcd3"))
    assert looked_at(world, unlisted) == {"etcd3"}  # stale data? plan removes it first

    world = World(world.names)
    moved = replace(
        healthy,
        members=tuple(
            replace(m, peer_urls=("http://127.0.99.3:2380",)) if m.name == "etcd3" else m
            for m in healthy.members
        ),
    )
    assert looked_at(world, moved) == {"etcd3"}  # plan finds members by peer URL

    world = World(world.names)
    assert looked_at(world, EtcdFacts(reachable=False)) == {"etcd1", "etcd2", "etcd3"}


class Connection:
    made = 0

    def __init__(self, fail: list[Exception]) -> None:
        Connection.made += 1
        self.closed = False
        self.fail = fail

    def execute(self, query: Any, params: Any = None) -> Connection:
        if self.fail:
            raise self.fail.pop()
        return self

    def fetchall(self) -> list[tuple[str]]:
        return [("admin",)]

    def fetchone(self) -> tuple[int] | None:
        return None  # a write's look before it acts: not there yet

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[Exception]:
    fail: list[Exception] = []
    Connection.made = 0
    monkeypatch.setattr(pg.psycopg, "connect", lambda **_: Connection(fail))
    return fail


def test_roles_are_read_over_one_kept_connection(connections: list[Exception]) -> None:
    clients = RealClients()
    for _ in range(3):
        db = clients.postgres("127.0.0.1", 5432, "postgres", "pw", timeout=2)
        assert db.existing_roles(["admin"]) == frozenset({"admin"})
    assert Connection.made == 1


def test_a_new_primarys_roles_are_read_and_made_over_one_connection(
    connections: list[Exception],
) -> None:
    """A new cluster's first write waits on the app's role and database: the cycle that
    sees the primary reads its roles and makes them over the one kept connection (each
    new login is a TLS handshake and a SCRAM exchange)."""
    desired = demo_desired()
    clients = RealClients()
    facts = converged(desired).patroni
    roles, databases, _ = observe_roles(facts, SECRETS, clients)
    assert roles is not None and databases is not None
    leader = facts.leader
    assert leader is not None
    made = [
        CreateRole(APP_USER, leader.host, leader.port),
        CreateDatabase(APP_DATABASE, APP_USER, leader.host, leader.port),
        CreateRole(ADMIN_USER, leader.host, leader.port),
    ]
    env = Env(DEMO, desired.topology, NoMachines([]), Binaries(), secrets=SECRETS, clients=clients)
    assert execute(made, env).error is None
    assert Connection.made == 1


def test_a_write_on_a_dropped_kept_connection_is_made_again_once(
    connections: list[Exception],
) -> None:
    db = RealClients().postgres("127.0.0.1", 5432, "postgres", "pw")
    db.existing_roles(["admin"])
    connections.append(psycopg.OperationalError("server closed the connection"))
    assert db.create_role(APP_USER, "pw") is True  # looked again, then made
    assert Connection.made == 2


def test_a_dropped_connection_is_made_again_once(connections: list[Exception]) -> None:
    db = RealClients().postgres("127.0.0.1", 5432, "postgres", "pw")
    db.existing_roles(["admin"])
    connections.append(psycopg.OperationalError("server closed the connection"))
    assert db.existing_roles(["admin"]) == frozenset({"admin"})  # answered now, not stale
    assert Connection.made == 2
    connections.extend([psycopg.OperationalError("down"), psycopg.OperationalError("down")])
    with pytest.raises(pg.ComponentError, match="reading roles: down"):
        db.existing_roles(["admin"])


def test_another_primary_gets_its_own_connection_and_the_old_one_closes(
    connections: list[Exception],
) -> None:
    clients = RealClients()
    old = clients.postgres("127.0.10.11", 5432, "postgres", "pw")
    old.existing_roles(["admin"])
    kept = old._kept
    new = clients.postgres("127.0.10.12", 5432, "postgres", "pw")
    assert new is not old and kept is not None and kept.closed
    assert clients.postgres("127.0.10.12", 5432, "postgres", "pw") is new


def test_the_reads_reuse_their_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket
    import threading

    from pgha_operator.shell.clients.etcd import collect_etcd
    from pgha_operator.shell.clients.patroni import collect_patroni

    with socket.socket() as sock:  # a port nobody listens on: every read is refused at once
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    urls = [dead, dead.replace("127.0.0.1", "127.0.0.2"), dead.replace("127.0.0.1", "127.0.0.3")]
    collect_patroni(urls)  # the first cycle starts the threads it needs
    started: list[threading.Thread] = []
    real_start = threading.Thread.start

    def start(thread: threading.Thread) -> None:
        started.append(thread)
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    for _ in range(10):
        facts = collect_patroni(urls)
        assert not facts.reachable and "refused" in (facts.error or "")
        assert not collect_etcd(urls).reachable
    # A pool per call started 3 threads each time; kept ones are reused (one more may start
    # when a thread has not yet marked itself idle).
    assert len(started) <= 3
