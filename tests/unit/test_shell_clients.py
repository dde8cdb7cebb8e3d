"""The Clients seam: observe, execute and the fencer reach components only through it.

A recording fake stands in for the real components; it refuses the observation reads
where a caller must not re-observe (execute).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from pgha_operator.core.actions import (
    CreateDatabase,
    CreateRole,
    PatchPatroniConfig,
    StartService,
)
from pgha_operator.core.desired import PLACEHOLDER_SECRETS
from pgha_operator.core.facts.observed import MachineFact
from pgha_operator.core.facts.types import (
    EtcdFacts,
    EtcdMember,
    HaproxyFacts,
    HaproxyServer,
    PatroniFacts,
)
from pgha_operator.core.plan import plan
from pgha_operator.core.render import (
    ADMIN_USER,
    APP_DATABASE,
    APP_USER,
    REST_USER,
    SUPERUSER,
    Binaries,
)
from pgha_operator.shell.clients import (
    Auth,
    Clients,
    ClientTls,
    ComponentError,
    EtcdApi,
    HaproxyApi,
    PatroniApi,
    PostgresApi,
    RealClients,
)
from pgha_operator.shell.clients.etcd import EtcdClient
from pgha_operator.shell.clients.haproxy import HaproxyClient
from pgha_operator.shell.clients.patroni import PatroniClient
from pgha_operator.shell.clients.postgres import PostgresClient
from pgha_operator.shell.clients.postgres_catalog import CatalogClient
from pgha_operator.shell.execute import Env, execute
from pgha_operator.shell.fencer import Fencer
from pgha_operator.shell.observe import observe
from tests.unit.test_plan import DEMO, converged, demo_desired

SECRETS = PLACEHOLDER_SECRETS


@dataclass
class FakePatroni:
    world: FakeClients
    url: str
    auth: Auth | None

    def is_primary(self) -> bool:
        self.world.calls.append(("is_primary", self.url))
        if self.url in self.world.dead:
            raise ComponentError(f"{self.url}: connection refused", url=self.url)
        return self.url == self.world.primary_url

    def alive(self) -> bool:
        return self.url not in self.world.dead

    def patch_config(self, patch: dict[str, Any]) -> dict[str, Any]:
        self.world.calls.append(("patch_config", self.url, patch, self.auth))
        return patch

    def restart(self, only_if_pending: bool = False) -> str:
        return "restarted"

    def switchover(self, leader: str, candidate: str | None = None) -> str:
        return "switched"

    def reinitialize(self, force: bool = False) -> str:
        return "started"


@dataclass
class FakePostgres:
    world: FakeClients
    where: tuple[str, int, str, str]

    def existing_roles(self, names: Sequence[str]) -> frozenset[str]:
        if self.world.postgres_down:
            raise ComponentError("connection refused", url=str(self.where))
        return frozenset(names) & self.world.roles

    def create_role(self, role: str, password: str, attributes: Sequence[str] = ("LOGIN",)) -> bool:
        self.world.calls.append(("create_role", self.where, role, password, tuple(attributes)))
        if self.world.postgres_down:
            raise ComponentError("connection refused", url=str(self.where))
        self.world.roles |= {role}
        return True

    def existing_databases(self, names: Sequence[str]) -> frozenset[str]:
        if self.world.postgres_down:
            raise ComponentError("connection refused", url=str(self.where))
        return frozenset(names) & self.world.databases

    def create_database(self, name: str, owner: str) -> bool:
        self.world.calls.append(("create_database", self.where, name, owner))
        if self.world.postgres_down:
            raise ComponentError("connection refused", url=str(self.where))
        self.world.databases |= {name}
        return True


@dataclass
class FakeEtcd:
    world: FakeClients

    def member_list(self) -> tuple[EtcdMember, ...]:
        return ()

    def add_member(self, peer_urls: Sequence[str], learner: bool = True) -> EtcdMember:
        raise NotImplementedError

    def promote_member(self, member_id: str) -> tuple[EtcdMember, ...]:
        raise NotImplementedError

    def remove_member(self, member_id: str) -> tuple[EtcdMember, ...]:
        raise NotImplementedError

    def unhealthy_voters(self) -> tuple[str, ...]:
        return ()

    def get(self, key: str) -> str | None:
        self.world.calls.append(("etcd_get", key))
        return self.world.keys.get(key)

    def delete_key_if_value(self, key: str, value: str, guard: object = None) -> bool:
        return self.world.keys.pop(key, None) == value


@dataclass
class FakeHaproxy:
    def stats(self) -> tuple[HaproxyServer, ...]:
        return ()


@dataclass
class FakeClients:
    patroni_facts: PatroniFacts = field(default_factory=lambda: PatroniFacts(reachable=False))
    primary_url: str | None = None
    dead: set[str] = field(default_factory=set)
    roles: frozenset[str] = frozenset()
    databases: frozenset[str] = frozenset()
    postgres_down: bool = False
    keys: dict[str, str] = field(default_factory=dict)
    observing: bool = True  # False: any observation read fails the test
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def etcd(self, client_urls: Sequence[str], timeout: float | None = None) -> FakeEtcd:
        return FakeEtcd(self)

    def patroni(
        self, api_url: str, auth: Auth | None = None, timeout: float | None = None
    ) -> FakePatroni:
        return FakePatroni(self, api_url, auth)

    def postgres(
        self, host: str, port: int, user: str, password: str, timeout: float | None = None
    ) -> FakePostgres:
        return FakePostgres(self, (host, port, user, password))

    def haproxy(self, stats_url: str, auth: tuple[str, str] | None = None) -> FakeHaproxy:
        return FakeHaproxy()

    def observe_etcd(self, client_urls: Sequence[str]) -> EtcdFacts:
        assert self.observing, "observe_etcd called"
        return EtcdFacts(reachable=False, error="fake")

    def observe_patroni(self, api_urls: Sequence[str]) -> PatroniFacts:
        assert self.observing, "observe_patroni called"
        self.calls.append(("observe_patroni", tuple(api_urls)))
        return self.patroni_facts

    def observe_haproxy(self, stats_url: str, auth: tuple[str, str] | None = None) -> HaproxyFacts:
        assert self.observing, "observe_haproxy called"
        return HaproxyFacts(reachable=False, error="fake")


class NoMachines:
    """A provider whose machines are all stopped: observe asks no host anything."""

    kind = "fake"
    can_fence = False

    def __init__(self, names: Sequence[str]) -> None:
        self.names = names

    def machines(self) -> list[MachineFact]:
        return [MachineFact(n, exists=False) for n in self.names]

    def host(self, name: str) -> Any:
        raise AssertionError(f"asked host {name} of a stopped machine")


def _env(clients: Clients) -> Env:
    desired = demo_desired()
    return Env(DEMO, desired.topology, NoMachines([]), Binaries(), secrets=SECRETS, clients=clients)


@pytest.mark.parametrize(
    ("api", "real"),
    [
        (Clients, RealClients),
        (EtcdApi, EtcdClient),
        (PatroniApi, PatroniClient),
        (PostgresApi, CatalogClient),
        (HaproxyApi, HaproxyClient),
    ],
)
def test_each_real_client_has_every_call_of_its_protocol(api: type, real: type) -> None:
    """No type checker runs here: compare the calls and their parameters by name."""
    calls = [n for n, v in vars(api).items() if callable(v) and not n.startswith("_")]
    assert calls
    for name in calls:
        want = list(inspect.signature(getattr(api, name)).parameters)
        assert list(inspect.signature(getattr(real, name)).parameters)[: len(want)] == want, name


# ---------------------------------------------------------------- plan fills the actions


def test_plan_gives_create_role_the_primarys_address() -> None:
    desired = demo_desired()
    observed = replace(converged(desired), roles=frozenset())
    leader = observed.patroni.leader
    assert leader is not None
    roles = [a for a in plan(desired, observed).actions if isinstance(a, CreateRole)]
    assert roles == [
        CreateRole(APP_USER, leader.host, leader.port),
        CreateRole(ADMIN_USER, leader.host, leader.port),
    ]


def test_plan_creates_the_app_database_after_its_role_on_the_primary() -> None:
    desired = demo_desired()
    observed = replace(converged(desired), roles=frozenset(), databases=frozenset())
    leader = observed.patroni.leader
    assert leader is not None
    actions = plan(desired, observed).actions
    assert actions[-3:-1] == (
        CreateRole(APP_USER, leader.host, leader.port),
        CreateDatabase(APP_DATABASE, APP_USER, leader.host, leader.port),
    )
    made = replace(observed, roles=frozenset({ADMIN_USER, APP_USER}), databases=frozenset({"app"}))
    assert plan(desired, made).actions == ()


def test_plan_sends_the_config_patch_to_the_leader() -> None:
    desired = demo_desired()
    observed = converged(desired)
    stale = {**desired.dynamic_config, "ttl": 99}
    observed = replace(observed, patroni=replace(observed.patroni, dynamic_config=stale))
    patches = [a for a in plan(desired, observed).actions if isinstance(a, PatchPatroniConfig)]
    assert [p.leader for p in patches] == [desired.topology.postgres[0]]


# ---------------------------------------------------------------- execute never re-observes


def test_execute_patches_the_leader_the_action_names() -> None:
    clients = FakeClients(observing=False)
    env = _env(clients)
    leader = env.topology.postgres[1]
    action = PatchPatroniConfig(leader, json.dumps({"ttl": 30}), ("ttl",))
    outcome = execute([action], env)
    assert outcome.error is None and outcome.done == [action]
    url = env.topology.rest_api_url(leader)
    assert clients.calls == [("patch_config", url, {"ttl": 30}, (REST_USER, SECRETS.rest_password))]


def test_execute_creates_the_role_where_the_action_says() -> None:
    clients = FakeClients(observing=False)
    outcome = execute([CreateRole(ADMIN_USER, "10.0.0.9", 5433)], _env(clients))
    assert outcome.error is None
    where = ("10.0.0.9", 5433, SUPERUSER, SECRETS.superuser_password)
    assert clients.calls == [
        (
            "create_role",
            where,
            ADMIN_USER,
            SECRETS.admin_password,
            ("LOGIN", "CREATEDB", "CREATEROLE"),
        )
    ]


def test_execute_creates_the_app_role_and_database_as_the_superuser_on_the_node() -> None:
    clients = FakeClients(observing=False)
    actions = [
        CreateRole(APP_USER, "10.0.0.9", 5433),
        CreateDatabase(APP_DATABASE, APP_USER, "10.0.0.9", 5433),
    ]
    outcome = execute(actions, _env(clients))
    assert outcome.error is None
    where = ("10.0.0.9", 5433, SUPERUSER, SECRETS.superuser_password)
    assert clients.calls == [
        ("create_role", where, APP_USER, SECRETS.app_password, ("LOGIN",)),
        ("create_database", where, APP_DATABASE, APP_USER),
    ]


def test_a_component_error_stops_the_run_and_is_reported() -> None:
    clients = FakeClients(observing=False, postgres_down=True)
    later = StartService("node1", "etcd")
    outcome = execute([CreateRole(ADMIN_USER, "10.0.0.9", 5433), later], _env(clients))
    assert outcome.done == []
    assert outcome.error is not None and "connection refused" in outcome.error
    assert isinstance(outcome.exception, ComponentError)


def test_postgres_client_refuses_unknown_attributes_before_connecting() -> None:
    client = PostgresClient("127.0.0.1", 1, "u", "p")
    with pytest.raises(ValueError, match="DROP"):
        client.create_role("r", "pw", ("LOGIN", "DROP"))


# ---------------------------------------------------------------- observe is complete


def test_observe_sets_down_and_reads_roles_through_the_clients() -> None:
    desired = demo_desired()
    facts = converged(desired).patroni
    clients = FakeClients(
        patroni_facts=facts, roles=frozenset({ADMIN_USER}), databases=frozenset({APP_DATABASE})
    )
    provider = NoMachines([m.name for m in desired.topology.machines])
    observed = observe(desired, provider, SECRETS, down=frozenset({"node2"}), clients=clients)
    assert observed.down == frozenset({"node2"})
    assert observed.roles == frozenset({ADMIN_USER})
    assert observed.databases == frozenset({APP_DATABASE})
    assert observed.patroni == facts
    assert (
        "observe_patroni",
        tuple(desired.topology.rest_api_url(n) for n in desired.topology.postgres),
    ) in clients.calls  # safe GETs: no credentials


@pytest.mark.parametrize(
    ("facts", "postgres_down"),
    [(PatroniFacts(reachable=False), False), (None, True)],
    ids=["no leader", "primary refuses"],
)
def test_observe_roles_unknown_without_an_answering_primary(
    facts: PatroniFacts | None, postgres_down: bool
) -> None:
    desired = demo_desired()
    facts = facts or converged(desired).patroni
    clients = FakeClients(patroni_facts=facts, postgres_down=postgres_down)
    provider = NoMachines([m.name for m in desired.topology.machines])
    observed = observe(desired, provider, SECRETS, clients=clients)
    assert observed.roles is None and observed.databases is None


# ---------------------------------------------------------------- the fencer's probes


def test_fencer_counts_failed_probes_through_the_clients() -> None:
    desired = demo_desired()
    observed = converged(desired)
    leader = desired.topology.postgres[0]
    url = desired.topology.rest_api_url(leader)
    clients = FakeClients(primary_url=url)
    fencer = Fencer(desired, NoMachines([]), clients)  # type: ignore[arg-type]
    fencer.update(desired, observed)
    assert fencer.probe() is None and fencer.failures == 0
    clients.dead.add(url)
    fencer.probe()
    assert fencer.failures == 1 and fencer.holding() == frozenset({leader})
    view = fencer.view()
    assert view.reachable_nodes == len(desired.topology.postgres) - 1
    assert view.etcd_quorum and view.leader_key is None  # the fake etcd answered: no key
    assert ("etcd_get", fencer.leader_key()) in clients.calls


def test_etcd_client_keeps_the_clusters_ca_whatever_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # requests lets REQUESTS_CA_BUNDLE replace a session's CA: etcd3gw's own session then
    # refused every etcd (CERTIFICATE_VERIFY_FAILED) on hosts that set it.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.9:3128")
    tls = ClientTls("/state/tls/ca.crt", "/state/tls/operator.crt", "/state/tls/operator.key")
    client = EtcdClient(["https://127.0.10.101:2379"], tls=tls)
    (gw,) = client._clients
    settings = gw.session.merge_environment_settings(gw.base_url, {}, None, None, None)
    assert settings["verify"] == tls.ca and not settings["proxies"]
    assert gw.session.cert == (tls.cert, tls.key)
    assert gw.base_url == "https://127.0.10.101:2379"


def test_etcd_client_without_its_tls_files_fails_as_a_component_error(tmp_path: Any) -> None:
    # A state dir without tls/ yet (a cluster made before TLS): requests raises a bare
    # OSError before connecting, which callers of a client do not expect.
    missing = ClientTls(*(str(tmp_path / n) for n in ("ca.crt", "operator.crt", "operator.key")))
    with pytest.raises(ComponentError, match="ca.crt"):
        EtcdClient(["https://127.0.0.1:9"], timeout=0.5, tls=missing).get("/x")
