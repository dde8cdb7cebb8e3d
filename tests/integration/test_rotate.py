"""`rotate passwords` on a live cluster while a writer keeps inserting through :5000.

One small cluster (1 etcd, 2 PostgreSQL, 1 HAProxy). The tests run in file order: every
login rotated with no operator running (the command acts itself), then one login beside a
running `run` operator, then a replica restarted on the new passwords.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgha_operator.core.rotation import BY_NAME
from pgha_operator.shell.clients import ComponentError, RealClients
from pgha_operator.shell.controller import Controller
from pgha_operator.shell.state import StateDir
from tests.integration.cluster_helpers import (
    ClusterFiles,
    Operator,
    Writer,
    cli,
    dsn,
    query,
    running_cluster,
    status,
    wait_for,
)

pytestmark = pytest.mark.integration

NET = "127.0.29"  # etcd1 .101, node1-2 .11-.12, haproxy1 .201
BODY = """  etcd: {members: 1}
  postgres: {instances: 2}
  loadBalancer: {instances: 1}
"""


@dataclass
class Live(ClusterFiles):
    rotated_from: dict[str, str] | None = None  # the passwords before the first rotation

    def secrets(self) -> dict[str, str]:
        return yaml.safe_load((self.state / "secrets.yaml").read_text())

    def members(self) -> dict[str, dict]:
        return {m["name"]: m for m in status(self.manifest, self.state)["postgres"]["members"]}

    def primary(self) -> str:
        return next(n for n, m in self.members().items() if m["role"] == "primary")

    def replica(self) -> str:
        return next(n for n, m in self.members().items() if m["role"] != "primary")

    def conninfo(self, node: str, user: str, password: str, dbname: str = "postgres") -> str:
        address = self.members()[node]["address"]
        return make_conninfo(
            host=address, port=5432, user=user, password=password, dbname=dbname,
            connect_timeout=3,
        )  # fmt: skip

    def as_superuser(self, node: str, sql: str) -> list[tuple]:
        return query(self.conninfo(node, "postgres", self.secrets()["superuser_password"]), sql)

    def replication(self) -> dict[str, tuple]:
        """The primary's walsenders: member name -> (pid, backend_start, state)."""
        rows = self.as_superuser(
            self.primary(),
            "SELECT application_name, pid, backend_start, state FROM pg_stat_replication",
        )
        return {r[0]: tuple(r[1:]) for r in rows}

    def patroni_yml(self, node: str) -> dict:
        return yaml.safe_load(
            (self.state / "machines" / node / "etc/patroni/patroni.yml").read_text()
        )


class RotatingWriter(Writer):
    """The test Writer, picking up its login's new password from the state dir after a
    refused login (what an application re-reading its secret does)."""

    def __init__(self, live: Live) -> None:
        self.live = live
        super().__init__(dsn(live.manifest, live.state))
        self.user = conninfo_to_dict(self.conninfo)["user"]

    def _after_failure(self) -> None:
        self._refresh()

    def _refresh(self) -> None:
        field = BY_NAME[self.user].field
        params = conninfo_to_dict(self.conninfo)
        params["password"] = self.live.secrets()[field]
        self.conninfo = make_conninfo(**params)


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    with running_cluster("rotate", f"{NET}.0/24", BODY, Live) as c:
        yield c


def refused(conninfo: str) -> bool:
    try:
        query(conninfo, "SELECT 1")
    except psycopg.OperationalError as exc:
        return "password authentication failed" in str(exc)
    return False


def rest_restart(live: Live, node: str, password: str) -> str:
    ctl = Controller([str(live.manifest)], state_dir=live.state)
    url = ctl.topology.rest_api_url(node)
    client = RealClients(StateDir(live.state).client_tls()).patroni(url, ("patroni", password))
    return client.restart()


def test_rotating_every_password_loses_no_write_and_keeps_replication(live: Live) -> None:
    old = live.rotated_from = live.secrets()
    before = live.replication()
    assert [s[2] for s in before.values()] == ["streaming"]
    with RotatingWriter(live) as writer:
        res = cli("rotate", "passwords", *live.args(), "--timeout", "180")
        time.sleep(1)  # a few writes with the new password
    assert res.returncode == 0, f"rotate failed:\n{res.stdout}\n{res.stderr}"
    assert "new passwords in force for postgres, replicator, admin, app, patroni, stats" in (
        res.stdout
    )
    assert writer.lost() == [], f"acknowledged rows lost: {writer.lost()[:20]}"
    new = live.secrets()
    assert all(new[f] != old[f] for f in old), "every password changed"
    assert not (live.state / "rotation.yaml").exists()
    assert yaml.safe_load((live.state / "secrets.yaml.bak").read_text()) == new
    # The existing replication connection survived the reload: same walsender, streaming.
    assert live.replication() == before
    assert status(live.manifest, live.state)["phase"] == "Converged"
    for node in live.members():
        auth = live.patroni_yml(node)["postgresql"]["authentication"]
        assert auth["replication"]["password"] == new["replication_password"]
        assert auth["superuser"]["password"] == new["superuser_password"]
        assert (
            live.patroni_yml(node)["restapi"]["authentication"]["password"]
            == (new["rest_password"])
        )


def test_old_passwords_are_refused_and_new_ones_accepted(live: Live) -> None:
    old, new = live.rotated_from, live.secrets()
    assert old is not None, "runs after the first rotation"
    primary = live.primary()
    roles = {r[0] for r in live.as_superuser(primary, "SELECT rolname FROM pg_roles")}
    checked = [n for n in ("postgres", "admin", "app", "replicator") if n in roles]
    assert {"postgres", "admin", "replicator"} <= set(checked)
    backup = yaml.safe_load((live.state / "secrets.yaml.bak").read_text())
    assert backup == new
    for name in checked:
        field = BY_NAME[name].field
        query(live.conninfo(primary, name, new[field]), "SELECT 1")  # accepted
        assert refused(live.conninfo(primary, name, old[field])), name


def test_a_rotation_beside_a_running_operator_is_done_by_that_operator(live: Live) -> None:
    old = live.secrets()
    op = Operator(live.manifest, live.state)
    try:
        wait_for("the operator's lock", lambda: (live.state / "operator.lock").read_text(), 30)
        with RotatingWriter(live) as writer:
            res = cli("rotate", "passwords", "--role", "replicator", "--role", "postgres",
                      *live.args(), "--timeout", "120")  # fmt: skip
        assert res.returncode == 0, f"rotate failed:\n{res.stdout}\n{res.stderr}"
        assert "beside the running operator" in res.stderr
        assert writer.lost() == []
    finally:
        op.stop()
    new = live.secrets()
    assert new["replication_password"] != old["replication_password"]
    assert new["superuser_password"] != old["superuser_password"]
    assert new["app_password"] == old["app_password"]
    assert "rotated passwords set on the primary" in op.output() or "patroni.yml" in op.output()
    primary = live.primary()
    assert refused(live.conninfo(primary, "postgres", old["superuser_password"]))
    query(live.conninfo(primary, "postgres", new["superuser_password"]), "SELECT 1")


def test_a_replica_restarted_after_the_rotation_streams_with_the_new_password(
    live: Live,
) -> None:
    replica = live.replica()
    before = live.replication()[replica]
    assert live.rotated_from is not None, "runs after the first rotation"
    with pytest.raises(ComponentError):  # the REST password before the rotation is refused
        rest_restart(live, replica, live.rotated_from["rest_password"])
    rest_restart(live, replica, live.secrets()["rest_password"])

    def streaming_anew() -> bool:
        now = live.replication().get(replica)
        return now is not None and now[0] != before[0] and now[2] == "streaming"

    wait_for("the restarted replica streaming on a new connection", streaming_anew, timeout=90)
    assert status(live.manifest, live.state)["phase"] == "Converged"
