"""A converged cluster in memory, for bench/cycle.py: machines, files and services from a
fake provider, and every component's HTTP answers served below `requests` (the real
clients and parsers run; only sockets are skipped). PostgreSQL's role check is answered by
`BenchClients` directly: its cost is a libpq login, not the operator's.

Why not tests/fakeworld: that world replaces the clients themselves (it models how the
components behave, for correctness), so their CPU would not be measured; this one keeps
them and fakes only the wire.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal
from unittest import mock

import urllib3

from pgha_operator.core.desired import Desired
from pgha_operator.core.facts.observed import MachineFact
from pgha_operator.core.render import ADMIN_USER, Binaries
from pgha_operator.core.services import ServiceState
from pgha_operator.core.topology import Layout, layout
from pgha_operator.shell.clients import RealClients
from pgha_operator.shell.hosts.base import CommandResult

STATS_HEADER = "# pxname,svname,status,check_status"


def machine_layout(name: str) -> Layout:
    return layout(f"/srv/pgha/bench/machines/{name}")


@dataclass
class FakeService:
    name: str

    def state(self) -> ServiceState:
        return ServiceState.RUNNING


@dataclass
class FakeHost:
    name: str
    files: dict[str, bytes] = field(default_factory=dict)

    def read(self, path: str) -> bytes | None:
        return self.files.get(path)

    def run(self, argv: Any, **_: Any) -> CommandResult:
        return CommandResult(tuple(argv), 0, "", "")  # `test -d <etcd data>/member`: there

    def service(self, name: str) -> FakeService:
        return FakeService(name)


class FakeProvider:
    kind = "local"
    service_manager: Literal["local", "systemd"] = "local"
    service_user = "postgres"
    binaries = Binaries()
    can_fence = False

    def __init__(self, desired: Desired) -> None:
        self.hosts = {m.name: FakeHost(m.name) for m in desired.topology.machines}
        self.facts = [MachineFact(m.name, True, m.address) for m in desired.topology.machines]
        for f in desired.files:
            self.hosts[f.machine].files[f.path] = f.content.encode()

    def machines(self) -> list[MachineFact]:
        return list(self.facts)

    def host(self, name: str) -> FakeHost:
        return self.hosts[name]

    def layout(self, name: str) -> Layout:
        return machine_layout(name)


def answers(desired: Desired) -> dict[tuple[str, str], tuple[int, str]]:
    """(method, URL) -> (status, body) of a healthy cluster matching `desired`."""
    topo = desired.topology
    out: dict[tuple[str, str], tuple[int, str]] = {}
    ids = {name: str(1000 + i) for i, name in enumerate(topo.etcd)}
    members = [
        {
            "ID": ids[n],
            "name": n,
            "peerURLs": [topo.etcd_peer_url(n)],
            "clientURLs": [topo.etcd_client_url_at(topo.address(n))],
        }
        for n in topo.etcd
    ]
    for url in topo.etcd_client_urls:
        out["POST", f"{url}/v3/cluster/member/list"] = (200, json.dumps({"members": members}))
        status = {"header": {"member_id": ids[topo.etcd[0]]}, "leader": ids[topo.etcd[0]]}
        out["POST", f"{url}/v3/maintenance/status"] = (200, json.dumps(status))
        out["GET", f"{url}/health"] = (200, '{"health": "true"}')
    leader, *replicas = topo.postgres
    cluster = {
        "members": [
            {
                "name": n,
                "role": "leader" if n == leader else "replica",
                "state": "running" if n == leader else "streaming",
                "api_url": f"{topo.rest_api_url(n)}/patroni",
                "host": topo.address(n),
                "port": topo.pg_port,
                "timeline": 1,
                "lag": 0,
            }
            for n in topo.postgres
        ]
    }
    primary = {
        "state": "running",
        "role": "primary",
        "timeline": 1,
        "replication": [{"application_name": r, "state": "streaming"} for r in replicas],
        "patroni": {"name": leader},
    }
    for n in topo.postgres:
        api = topo.rest_api_url(n)
        out["GET", f"{api}/primary"] = (200, json.dumps(primary)) if n == leader else (503, "{}")
        out["GET", f"{api}/cluster"] = (200, json.dumps(cluster))
        out["GET", f"{api}/config"] = (200, json.dumps(desired.dynamic_config))
    rows = [STATS_HEADER]
    for backend, up in (("primary", {leader}), ("replicas", set(replicas))):
        rows += [f"{backend},{n},{'UP' if n in up else 'DOWN'},L7OK" for n in topo.postgres]
    stats = desired.cluster.spec.load_balancer.ports.stats
    for lb in topo.loadbalancers:
        out["GET", f"http://{topo.address(lb)}:{stats}/;csv"] = (200, "\n".join(rows) + "\n")
    return out


@dataclass
class _Roles:
    """Every role and database the operator looks for exists."""

    def existing_roles(self, names: Any) -> frozenset[str]:
        return frozenset({ADMIN_USER, *names})

    def existing_databases(self, names: Any) -> frozenset[str]:
        return frozenset(names)


class BenchClients(RealClients):
    """The real clients, but PostgreSQL is not asked: the operator's roles exist."""

    def postgres(self, *_: Any, **__: Any) -> _Roles:  # type: ignore[override]
        return _Roles()


@contextlib.contextmanager
def serving(desired: Desired) -> Iterator[None]:
    """Answer every HTTP request from `answers(desired)` at urllib3's lowest level (under
    requests and the clients' own urllib3 pool alike): only the socket is skipped."""
    table = answers(desired)

    def make_request(
        pool: urllib3.HTTPConnectionPool, conn: Any, method: str, url: str, **kw: Any
    ) -> urllib3.HTTPResponse:
        key = (method, f"{pool.scheme}://{pool.host}:{pool.port}{url}")
        status, body = table.get(key, (404, "not found"))
        return urllib3.HTTPResponse(
            body=io.BytesIO(body.encode()),
            status=status,
            headers={"Content-Length": str(len(body.encode()))},
            preload_content=kw.get("preload_content", True),
            decode_content=kw.get("decode_content", True),
            request_method=method,
            request_url=key[1],
            pool=pool,
            connection=conn,
        )

    with mock.patch.object(urllib3.HTTPConnectionPool, "_make_request", make_request):
        yield
