"""Fake clients: the reads and writes of shell/clients/* against the fake world.

They answer with the JSON shapes the real components send and parse them with the real
core/facts parsers, and fail with the real clients' errors (ComponentError), so observe,
execute and the fencer take the same paths as against real processes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pgha_operator.core.facts.etcd import parse_member, parse_member_list
from pgha_operator.core.facts.haproxy import csv_url, parse_stats_csv
from pgha_operator.core.facts.patroni import (
    api_base,
    named_primaries,
    parse_cluster,
    parse_config,
    parse_patroni,
    streaming_replicas,
    with_streaming,
)
from pgha_operator.core.facts.types import (
    EtcdFacts,
    EtcdMember,
    HaproxyFacts,
    HaproxyServer,
    PatroniFacts,
)
from pgha_operator.core.leadership import LeaseGuard
from pgha_operator.shell.clients import ComponentError, KeyHolder
from tests.fakeworld.haproxy import stats_csv
from tests.fakeworld.wire import CallError

if TYPE_CHECKING:
    from tests.fakeworld.world import FakeWorld


def _component_error(exc: CallError, url: str) -> ComponentError:
    return ComponentError(str(exc), url=url, status=exc.status)


class FakeEtcdClient:
    """shell.clients.etcd.EtcdClient's calls: first endpoint that answers, like the real one."""

    def __init__(self, world: FakeWorld, client_urls: Sequence[str]) -> None:
        self.world = world
        self.client_urls = tuple(u.rstrip("/") for u in client_urls)

    def _call(self, what: str, fn: Any) -> Any:
        errors = []
        for url in self.client_urls:
            try:
                self.world.etcd.endpoint(url)
            except CallError as exc:
                errors.append(str(exc))
                continue
            if self.world.faults.hit("call_lost", f"etcd {what}"):
                raise ComponentError(f"etcd {what} via {url}: timed out (injected)", url=url)
            try:
                result = fn(url)
            except CallError as exc:
                raise _component_error(exc, url) from exc
            if self.world.faults.hit("call_late", f"etcd {what}"):
                raise ComponentError(f"etcd {what} via {url}: timed out (injected, late)", url=url)
            return result
        raise ComponentError(
            f"etcd {what}: no endpoint answered ({'; '.join(errors)})", url=self.client_urls[0]
        )

    def member_list(self) -> tuple[EtcdMember, ...]:
        return parse_member_list(self._call("member list", self.world.etcd.member_list))

    def add_member(self, peer_urls: Sequence[str], learner: bool = True) -> EtcdMember:
        data = self._call("member add", lambda u: self.world.etcd.add(u, peer_urls[0], learner))
        return parse_member(data["member"])

    def promote_member(self, member_id: str) -> tuple[EtcdMember, ...]:
        return parse_member_list(
            self._call("member promote", lambda u: self.world.etcd.promote(u, member_id))
        )

    def remove_member(self, member_id: str) -> tuple[EtcdMember, ...]:
        return parse_member_list(
            self._call("member remove", lambda u: self.world.etcd.remove(u, member_id))
        )

    def unhealthy_voters(self) -> tuple[str, ...]:
        voters = [m for m in self.member_list() if not m.is_learner]
        healthy = FakeClients(self.world)._healthy
        return tuple(
            m.name or m.id for m in voters if not (m.client_urls and healthy(m.client_urls[0]))
        )

    def get(self, key: str) -> str | None:
        return self._call(f"get {key}", lambda u: self.world.etcd.get(u, key))

    def delete_key_if_value(
        self,
        key: str,
        value: str,
        guard: LeaseGuard | None = None,
        put: Mapping[str, str] | None = None,
    ) -> bool:
        return self._call(
            f"delete {key}", lambda u: self.world.etcd.delete_if(u, key, value, guard, put)
        )


class FakeEtcdLeaseClient(FakeEtcdClient):
    """shell.clients.etcd_lease.EtcdLeaseClient's calls (keys need a quorum, as for real)."""

    def _leases(self, what: str, fn: Any) -> Any:
        def call(url: str) -> Any:
            self.world.etcd._need_quorum(url)
            return fn(self.world.etcd.leases)

        return self._call(what, call)

    def holder(self, key: str) -> KeyHolder | None:
        return self._leases(f"get {key}", lambda m: m.holder(key))

    def grant(self, ttl: int) -> int:
        return self._leases("lease grant", lambda m: m.grant(ttl))

    def create(self, key: str, value: str, lease: int) -> int | None:
        return self._leases(f"create {key}", lambda m: m.create(key, value, lease))

    def keepalive(self, lease: int) -> int:
        return self._leases("lease keepalive", lambda m: m.keepalive(lease))

    def revoke(self, lease: int) -> None:
        self._leases("lease revoke", lambda m: m.revoke(lease))


class FakePatroniClient:
    """shell.clients.patroni.PatroniClient's calls against one node's REST API."""

    def __init__(self, world: FakeWorld, api_url: str, auth: tuple[str, str] | None = None) -> None:
        self.world = world
        self.api_url = api_base(api_url)
        self.auth = auth

    def _do(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(self.api_url, *args)
        except CallError as exc:
            raise _component_error(exc, self.api_url) from exc

    def cluster(self) -> dict[str, Any]:
        return self._do(self.world.patroni_api.cluster)

    def patroni(self) -> dict[str, Any]:
        return self._do(lambda u: self.world.patroni_api.primary(u)[1])

    def config(self) -> dict[str, Any]:
        return self._do(self.world.patroni_api.config)

    def is_primary(self) -> bool:
        return self._do(self.world.patroni_api.primary)[0] == 200

    def alive(self) -> bool:
        try:
            self.world.patroni_api.node_at(self.api_url)
        except CallError:
            return False
        return True

    def patch_config(self, patch: dict[str, Any]) -> dict[str, Any]:
        return self._do(self.world.patroni_api.patch_config, patch)

    def reload(self) -> str:
        return self._do(self.world.patroni_api.reload)

    def restart(self, only_if_pending: bool = False) -> str:
        return self._do(self.world.patroni_api.restart)

    def switchover(self, leader: str, candidate: str | None = None) -> str:
        return self._do(self.world.patroni_api.switchover, leader, candidate)

    def reinitialize(self, force: bool = False) -> str:
        return self._do(self.world.patroni_api.reinitialize)

    def close(self) -> None:
        return None

    def __enter__(self) -> FakePatroniClient:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class FakePostgres:
    """shell.clients.postgres.PostgresClient's calls against the PostgreSQL at host:port."""

    def __init__(
        self, world: FakeWorld, host: str, port: int, user: str = "", password: str = ""
    ) -> None:
        self.world, self.where = world, f"{host}:{port}"
        self.user, self.password = user, password

    def _primary(self) -> bool:
        """Whether the server at host:port accepts writes; ComponentError if it is down or
        the login's password is not the one its role has."""
        wanted = self.world.patroni.passwords.get(self.user)
        if wanted is not None and wanted != self.password:
            raise ComponentError(
                f"postgresql://{self.user}@{self.where}: password authentication failed",
                url=self.where,
            )
        api = self.world.patroni_api
        for _, n in self.world.patroni.nodes():
            if n.config["postgresql"]["connect_address"] == self.where:
                if n.state in ("running", "streaming"):
                    return api.is_primary(n)
                break
        raise ComponentError(f"postgresql://{self.where}: connection refused", url=self.where)

    def existing_roles(self, names: Sequence[str]) -> frozenset[str]:
        self._primary()
        return frozenset(names) & frozenset(self.world.patroni.roles)

    def existing_databases(self, names: Sequence[str]) -> frozenset[str]:
        self._primary()
        return frozenset(names) & frozenset(self.world.patroni.databases)

    def create_database(self, name: str, owner: str) -> bool:
        if not self._primary():
            raise ComponentError(
                f"postgresql://{self.where}: cannot execute CREATE DATABASE in a read-only "
                "transaction",
                url=self.where,
            )
        if owner not in self.world.patroni.roles:
            raise ComponentError(
                f'postgresql://{self.where}: role "{owner}" does not exist', url=self.where
            )
        if name in self.world.patroni.databases:
            return False
        self.world.patroni.databases.add(name)
        return True

    def create_role(self, role: str, password: str, attributes: Sequence[str] = ("LOGIN",)) -> bool:
        if not self._primary():
            raise ComponentError(
                f"postgresql://{self.where}: cannot execute CREATE ROLE in a read-only transaction",
                url=self.where,
            )
        if role in self.world.patroni.roles:
            return False
        self.world.patroni.roles.add(role)
        return True

    def set_password(self, role: str, password: str) -> None:
        if not self._primary():
            raise ComponentError(f"postgresql://{self.where}: read-only", url=self.where)
        self.world.patroni.passwords[role] = password


class FakeHaproxy:
    def __init__(self, world: FakeWorld, stats_url: str) -> None:
        self.world, self.url = world, csv_url(stats_url)

    def stats(self) -> tuple[HaproxyServer, ...]:
        try:
            return parse_stats_csv(stats_csv(self.world, self.url))
        except CallError as exc:
            raise _component_error(exc, self.url) from exc


class FakeClients:
    """Every client the shell needs (shell.clients.Clients), bound to one world."""

    def __init__(self, world: FakeWorld) -> None:
        self.world = world

    def etcd(self, client_urls: Sequence[str], timeout: float | None = None) -> FakeEtcdClient:
        return FakeEtcdClient(self.world, client_urls)

    def etcd_lease(self, client_urls: Sequence[str], timeout: float) -> FakeEtcdLeaseClient:
        return FakeEtcdLeaseClient(self.world, client_urls)

    def patroni(
        self, api_url: str, auth: tuple[str, str] | None = None, timeout: float | None = None
    ) -> FakePatroniClient:
        return FakePatroniClient(self.world, api_url, auth)

    def postgres(
        self, host: str, port: int, user: str, password: str, timeout: float | None = None
    ) -> FakePostgres:
        return FakePostgres(self.world, host, port, user, password)

    def haproxy(self, stats_url: str, auth: tuple[str, str] | None = None) -> FakeHaproxy:
        return FakeHaproxy(self.world, stats_url)

    # ------------------------------------------------------------------ observation

    def observe_etcd(self, client_urls: Sequence[str]) -> EtcdFacts:
        etcd = self.world.etcd
        errors = []
        for url in client_urls:
            try:
                members = parse_member_list(etcd.member_list(url))
            except CallError as exc:
                errors.append(str(exc))
                continue
            healthy = frozenset(
                m.name for m in members if m.client_urls and self._healthy(m.client_urls[0])
            )
            voters = [m for m in members if not m.is_learner]
            up = [v for v in voters if v.name in healthy]
            leader = up[0].id if up and len(up) * 2 > len(voters) else None
            return EtcdFacts(reachable=True, members=members, healthy=healthy, leader_id=leader)
        return EtcdFacts(reachable=False, error=f"no etcd endpoint answered: {'; '.join(errors)}")

    def _healthy(self, client_url: str) -> bool:
        try:
            return self.world.etcd.healthy(self.world.etcd.endpoint(client_url))
        except CallError:
            return False

    def observe_patroni(self, api_urls: Sequence[str]) -> PatroniFacts:
        """The real collect_patroni's steps: /primary everywhere, then /cluster and /config
        from the node that answered 200 first."""
        api = self.world.patroni_api
        urls = [api_base(u) for u in api_urls]
        primaries: set[str] = set()
        streaming: set[str] = set()
        alive: list[str] = []
        errors: list[str] = []
        for url in urls:
            try:
                code, body = api.primary(url)
            except CallError as exc:
                errors.append(str(exc))
                continue
            alive.append(url)
            if code == 200:
                primaries.add(parse_patroni(body).name or url)
                streaming |= streaming_replicas(body)
        order = [u for u in alive if self._answers_primary(u)] + [
            u for u in alive if not self._answers_primary(u)
        ]
        for url in order:
            try:
                members = with_streaming(parse_cluster(api.cluster(url)), frozenset(streaming))
            except CallError as exc:
                errors.append(str(exc))
                continue
            named = named_primaries(frozenset(primaries), members)
            try:
                config = parse_config(api.config(url))
            except CallError as exc:
                return PatroniFacts(
                    reachable=False,
                    members=members,
                    primaries=named,
                    error=f"GET /config failed: {exc}",
                    no_dcs_config=exc.status == 502,  # as the real client reads it
                )
            return PatroniFacts(
                reachable=True, members=members, dynamic_config=config, primaries=named
            )
        return PatroniFacts(
            reachable=False,
            primaries=frozenset(primaries),
            error=f"no Patroni node answered: {'; '.join(errors) or 'no REST API URLs given'}",
        )

    def _answers_primary(self, url: str) -> bool:
        try:
            return self.world.patroni_api.primary(url)[0] == 200
        except CallError:
            return False

    def observe_haproxy(self, stats_url: str, auth: tuple[str, str] | None = None) -> HaproxyFacts:
        url = csv_url(stats_url)
        try:
            return HaproxyFacts(reachable=True, servers=parse_stats_csv(stats_csv(self.world, url)))
        except CallError as exc:
            return HaproxyFacts(reachable=False, error=str(exc))
