"""The pooler (spec.pooler) on a real cluster (local provider: 1 etcd, 2 PostgreSQL nodes,
1 HAProxy, max_connections 30): more clients than PostgreSQL takes get in through
HAProxy's pooler port; wrong passwords, the superuser and plaintext are refused; after a
switchover the pooler port and `dsn --multi-host` reach the new primary, with no PgBouncer
restarted; `status` shows each node's pools."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import psycopg
import pytest
import yaml

from tests.integration.cluster_helpers import (
    ClusterFiles,
    cli,
    running_cluster,
    service_pid,
    status,
    wait_for,
)

pytestmark = pytest.mark.integration

NET = "127.0.46"
MAX_CONNECTIONS = 30
CLIENTS = 2 * MAX_CONNECTIONS  # more than PostgreSQL takes
POOL_SIZE = 5
BODY = f"""  etcd: {{members: 1}}
  postgres:
    instances: 2
    parameters: {{max_connections: {MAX_CONNECTIONS}}}
  loadBalancer:
    machines: [{{name: haproxy, address: {NET}.201}}]
  pooler: {{enabled: true, defaultPoolSize: {POOL_SIZE}, maxClientConn: 200}}
"""


@dataclass
class Live(ClusterFiles):
    def dsn(self, *extra: str) -> str:
        # connect_timeout 2: a refused or dead address is given up quickly
        return cli("dsn", *self.args(), *extra, check=True).stdout.strip() + " connect_timeout=2"

    def secrets(self) -> dict[str, str]:
        return yaml.safe_load((self.state / "secrets.yaml").read_text())

    def primary(self) -> str:
        members = status(self.manifest, self.state)["postgres"]["members"]
        return next(m["name"] for m in members if m["role"] == "primary")


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    with running_cluster("pool", f"{NET}.0/24", BODY, Live) as c:
        yield c


def connect(conninfo: str) -> psycopg.Connection:
    # No server-side prepared statements: transaction pooling may change server between them.
    return psycopg.connect(conninfo, autocommit=True, prepare_threshold=None)


def served_by(conninfo: str) -> tuple[str, bool]:
    with connect(conninfo) as conn:
        row = conn.execute("SELECT host(inet_server_addr()), pg_is_in_recovery()").fetchone()
    assert row is not None
    return row[0], row[1]


def test_more_clients_than_max_connections_get_in_through_the_pooler(live: Live) -> None:
    pooled = live.dsn("--role", "pooler")
    conns = []
    try:
        for _ in range(CLIENTS):
            conns.append(connect(pooled))  # all held open at once

        def work(conn: psycopg.Connection) -> int:
            total = 0
            for _ in range(3):
                row = conn.execute("SELECT 1 FROM pg_sleep(0.02)").fetchone()
                total += row[0] if row else 0
            return total

        with ThreadPoolExecutor(max_workers=20) as pool:
            assert list(pool.map(work, conns)) == [3] * CLIENTS
    finally:
        for conn in conns:
            conn.close()
    # The same number of clients straight to PostgreSQL (through :5000) is refused.
    direct = live.dsn()
    held = []
    with pytest.raises(psycopg.OperationalError, match="too many clients|reserved"):
        try:
            for _ in range(CLIENTS):
                held.append(connect(direct))
        finally:
            for conn in held:
                conn.close()


def test_wrong_passwords_the_superuser_and_plaintext_are_refused(live: Live) -> None:
    ca = live.state / "tls" / "ca.crt"
    base = f"host={NET}.201 port=6432 sslmode=verify-full sslrootcert={ca} connect_timeout=2"
    with pytest.raises(psycopg.OperationalError, match="authentication failed"):
        connect(f"{base} user=app dbname=app password=wrong")
    superuser = live.secrets()["superuser_password"]
    for role in ("postgres", "replicator"):  # the lookup function answers neither
        with pytest.raises(psycopg.OperationalError):
            connect(f"{base} user={role} dbname=postgres password={superuser}")
    app = live.secrets()["app_password"]
    with pytest.raises(psycopg.OperationalError, match="SSL required"):
        connect(f"host={NET}.11 port=6432 sslmode=disable user=app dbname=app password={app}")
    assert served_by(f"{base} user=app dbname=app password={app}")[1] is False


def test_status_shows_each_nodes_pools(live: Live) -> None:
    served_by(live.dsn("--role", "pooler"))
    pools = status(live.manifest, live.state)["pooler"]
    assert set(pools) == {"node1", "node2"}
    primary = live.primary()
    assert any(p["database"] == "app" and p["user"] == "app" for p in pools[primary]["pools"])
    text = cli("status", *live.args()).stdout
    assert "pooler (SHOW POOLS):" in text
    assert f"{primary}: app/app transaction" in text


def test_a_dead_pgbouncer_and_an_edited_ini_are_repaired(live: Live) -> None:
    ini = live.state / "machines" / "node2" / "etc" / "pgbouncer" / "pgbouncer.ini"
    rendered = ini.read_text()
    pid = service_pid(live.state, "node2", "pgbouncer")
    assert pid is not None
    ini.write_text(rendered.replace("pool_mode = transaction", "pool_mode = session"))
    os.kill(pid, signal.SIGKILL)
    res = cli("apply", *live.args(), "--timeout", "120", timeout=240)
    assert res.returncode == 0, res.stdout + res.stderr
    assert ini.read_text() == rendered
    assert service_pid(live.state, "node2", "pgbouncer") not in (None, pid)
    # node2's pooler answers again (its certificate names its own address too)
    pooled = live.dsn("--role", "pooler", "--show-password")
    assert served_by(pooled.replace(f"host={NET}.201", f"host={NET}.12"))


def test_rotating_the_pooler_roles_password_keeps_the_pooler_working(live: Live) -> None:
    before = live.secrets()["pooler_password"]
    res = cli("rotate", "passwords", *live.args(), "--role", "pgha_pooler", "--timeout", "120",
              timeout=240)  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    after = live.secrets()["pooler_password"]
    assert after != before
    userlist = live.state / "machines" / "node1" / "etc" / "pgbouncer" / "userlist.txt"
    assert after in userlist.read_text()
    # A new login needs auth_query, which logs in as pgha_pooler with the new password.
    wait_for("a login through the pooler",
             lambda: served_by(live.dsn("--role", "pooler"))[1] is False, timeout=30)  # fmt: skip


def test_switchover_is_followed_by_the_pooler_and_by_multi_host(live: Live) -> None:
    old = live.primary()
    new = "node2" if old == "node1" else "node1"
    poolers = {n: service_pid(live.state, n, "pgbouncer") for n in ("node1", "node2")}
    assert all(poolers.values())
    pooled, multi = live.dsn("--role", "pooler"), live.dsn("--multi-host")
    assert "target_session_attrs=read-write" in multi
    new_address = f"{NET}.{11 if new == 'node1' else 12}"
    assert served_by(multi) != (new_address, False)
    res = cli("switchover", *live.args(), "--to", new, timeout=120)
    assert res.returncode == 0, f"switchover failed:\n{res.stdout}\n{res.stderr}"
    wait_for("the pooler port to reach the new primary",
             lambda: served_by(pooled) == (new_address, False), timeout=60)  # fmt: skip
    assert served_by(multi) == (new_address, False)
    replicas = live.dsn("--multi-host", "--role", "replicas")
    assert "target_session_attrs=prefer-standby" in replicas
    wait_for("the old primary to serve reads", lambda: served_by(replicas)[1], timeout=60)
    # Followed without touching PgBouncer: the same processes on both nodes.
    assert {n: service_pid(live.state, n, "pgbouncer") for n in poolers} == poolers


def test_dsn_refuses_what_cannot_work(live: Live) -> None:
    for extra, why in (
        (("--multi-host", "--node", "node1"), "cannot go with --node"),
        (("--multi-host", "--role", "pooler"), "--role pooler without --multi-host"),
        (("--multi-host", "--user", "postgres"), "connects to one node"),
    ):
        res: subprocess.CompletedProcess[str] = cli("dsn", *live.args(), *extra)
        assert res.returncode != 0 and why in res.stderr, (extra, res.stderr)
