"""One client per component, behind one injectable factory.

`observe`, `execute` (through `Env`) and the `Fencer` reach etcd, Patroni, PostgreSQL and
HAProxy only through a `Clients`: `RealClients` speaks to the real components; a test passes
an in-memory world instead. Each `*Api` Protocol lists exactly the calls the shell makes.

Calls that change or read one component raise `ComponentError` (a TemporaryError) when it
does not answer or refuses. The `observe_*` reads never raise: an unreachable component is
a fact (reachable=False, error says why).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from pgha_operator.core.catalog_actions import RoleAttributes
from pgha_operator.core.facts.backup import ArchiverFacts
from pgha_operator.core.facts.catalog import CatalogFacts
from pgha_operator.core.facts.types import (
    EtcdFacts,
    EtcdMember,
    HaproxyFacts,
    HaproxyServer,
    PatroniFacts,
)
from pgha_operator.core.leadership import LeaseGuard
from pgha_operator.shell.clients import etcd as _etcd
from pgha_operator.shell.clients import etcd_lease as _etcd_lease
from pgha_operator.shell.clients import haproxy as _haproxy
from pgha_operator.shell.clients import patroni as _patroni
from pgha_operator.shell.clients import postgres as _postgres
from pgha_operator.shell.clients.errors import ComponentError
from pgha_operator.shell.clients.postgres_catalog import CatalogClient
from pgha_operator.shell.clients.tls import ClientTls

Auth = tuple[str, str]  # HTTP basic auth (user, password)

__all__ = [
    "Auth",
    "Clients",
    "ClientTls",
    "ComponentError",
    "EtcdApi",
    "EtcdLeaseApi",
    "KeyHolder",
    "HaproxyApi",
    "PatroniApi",
    "PostgresApi",
    "RealClients",
]


class EtcdApi(Protocol):
    """The etcd cluster, through whichever of its client URLs answers."""

    def member_list(self) -> tuple[EtcdMember, ...]: ...

    def add_member(self, peer_urls: Sequence[str], learner: bool = True) -> EtcdMember: ...

    def promote_member(self, member_id: str) -> tuple[EtcdMember, ...]: ...

    def remove_member(self, member_id: str) -> tuple[EtcdMember, ...]: ...

    def unhealthy_voters(self) -> tuple[str, ...]: ...

    def get(self, key: str) -> str | None: ...

    def delete_prefix(self, prefix: str) -> None: ...

    def delete_key_if_value(
        self,
        key: str,
        value: str,
        guard: LeaseGuard | None = None,
        put: Mapping[str, str] | None = None,
    ) -> bool: ...


KeyHolder = _etcd_lease.KeyHolder


class EtcdLeaseApi(Protocol):
    """The operator's leader lease and key (shell/leadership.py)."""

    def holder(self, key: str) -> KeyHolder | None: ...

    def grant(self, ttl: int) -> int: ...

    def create(self, key: str, value: str, lease: int) -> int | None: ...

    def keepalive(self, lease: int) -> int: ...

    def revoke(self, lease: int) -> None: ...


class PatroniApi(Protocol):
    """One Patroni node's REST API."""

    def is_primary(self) -> bool:
        """GET /primary: True on 200, False on 503; raises ComponentError if unreachable."""
        ...

    def alive(self) -> bool:
        """GET /patroni answered (200 or 503). Never raises."""
        ...

    def patch_config(self, patch: dict[str, Any]) -> dict[str, Any]: ...

    def restart(self, only_if_pending: bool = False) -> str: ...

    def switchover(self, leader: str, candidate: str | None = None) -> str: ...

    def reinitialize(self, force: bool = False) -> str: ...


class PostgresApi(Protocol):
    """One PostgreSQL server, logged in as one user."""

    def received_wal(self) -> tuple[bool, int | None]:
        """(in recovery, the WAL position a replica received), for an assisted switchover."""
        ...

    def existing_roles(self, names: Sequence[str]) -> frozenset[str]: ...

    def create_role(
        self, role: str, password: str, attributes: Sequence[str] = ("LOGIN",)
    ) -> bool: ...

    def set_password(self, role: str, password: str) -> None: ...

    def set_up_pooler_auth(self, role: str, password: str) -> None: ...

    def existing_databases(self, names: Sequence[str]) -> frozenset[str]: ...

    def archiver(self) -> tuple[ArchiverFacts, int]: ...

    def create_database(self, name: str, owner: str) -> bool: ...

    # Declared roles and databases (shell/clients/postgres_catalog.py).
    def read_catalog(
        self, roles: Sequence[str], databases: Sequence[str], extensions_of: Sequence[str]
    ) -> CatalogFacts: ...

    def create_role_declared(
        self, role: str, attributes: RoleAttributes, password: str | None
    ) -> bool: ...

    def alter_role_declared(
        self, role: str, attributes: RoleAttributes, password: str | None
    ) -> None: ...

    def grant_membership(self, role: str, group: str) -> None: ...

    def revoke_membership(self, role: str, group: str) -> None: ...

    def drop_role(self, role: str) -> None: ...

    def create_database_declared(
        self, name: str, owner: str, encoding: str, locale: str | None
    ) -> bool: ...

    def set_database_owner(self, name: str, owner: str) -> None: ...

    def create_extension(self, database: str, extension: str) -> None: ...

    def drop_database(self, name: str) -> None: ...


class HaproxyApi(Protocol):
    """One HAProxy's stats page."""

    def stats(self) -> tuple[HaproxyServer, ...]: ...


class Clients(Protocol):
    """Makes the clients and takes the observation reads. `timeout` None: the client's own
    default (seconds per request)."""

    def etcd(self, client_urls: Sequence[str], timeout: float | None = None) -> EtcdApi: ...

    def etcd_lease(self, client_urls: Sequence[str], timeout: float) -> EtcdLeaseApi: ...

    def patroni(
        self, api_url: str, auth: Auth | None = None, timeout: float | None = None
    ) -> PatroniApi: ...

    def postgres(
        self, host: str, port: int, user: str, password: str, timeout: float | None = None
    ) -> PostgresApi: ...

    def haproxy(self, stats_url: str, auth: Auth | None = None) -> HaproxyApi: ...

    def observe_etcd(self, client_urls: Sequence[str]) -> EtcdFacts: ...

    def observe_patroni(self, api_urls: Sequence[str]) -> PatroniFacts:
        """Safe GETs only: no credentials."""
        ...

    def observe_haproxy(self, stats_url: str, auth: Auth | None = None) -> HaproxyFacts:
        """`auth`: the stats page's user and password."""
        ...


class RealClients:
    """The real components, over HTTP (etcd's gateway, Patroni's REST API, HAProxy's stats
    page) and libpq. Keeps the last PostgreSQL client (and its connection) for the next
    call with the same server and login: the observation asks the primary every cycle."""

    def __init__(self, tls: ClientTls | None = None) -> None:
        # The operator's certificate and the cluster's CA; None: plain connections (a
        # component started without TLS, in tests of the clients themselves).
        self.tls = tls
        self._postgres: dict[tuple[str, int, str, str, float], CatalogClient] = {}
        self._lock = threading.Lock()

    def etcd(self, client_urls: Sequence[str], timeout: float | None = None) -> EtcdApi:
        return _etcd.EtcdClient(client_urls, timeout or _etcd.TIMEOUT, self.tls)

    def etcd_lease(self, client_urls: Sequence[str], timeout: float) -> EtcdLeaseApi:
        return _etcd_lease.EtcdLeaseClient(client_urls, timeout, self.tls)

    def patroni(
        self, api_url: str, auth: Auth | None = None, timeout: float | None = None
    ) -> PatroniApi:
        return _patroni.PatroniClient(api_url, auth, timeout or _patroni.TIMEOUT, tls=self.tls)

    def postgres(
        self, host: str, port: int, user: str, password: str, timeout: float | None = None
    ) -> PostgresApi:
        key = (host, port, user, password, timeout or _postgres.CONNECT_TIMEOUT)
        with self._lock:
            client = self._postgres.get(key)
            if client is None:
                for old in self._postgres.values():
                    old.close()  # another server (a new primary) or login: let it go
                client = CatalogClient(
                    host,
                    port,
                    user,
                    password,
                    timeout=key[4],
                    sslrootcert=self.tls.ca if self.tls else None,
                )
                self._postgres = {key: client}
        return client

    def haproxy(self, stats_url: str, auth: Auth | None = None) -> HaproxyApi:
        return _haproxy.HaproxyClient(stats_url, auth)

    def observe_etcd(self, client_urls: Sequence[str]) -> EtcdFacts:
        return _etcd.collect_etcd(client_urls, tls=self.tls)

    def observe_patroni(self, api_urls: Sequence[str]) -> PatroniFacts:
        return _patroni.collect_patroni(api_urls, self.tls)

    def observe_haproxy(self, stats_url: str, auth: Auth | None = None) -> HaproxyFacts:
        return _haproxy.collect_haproxy(stats_url, auth)
