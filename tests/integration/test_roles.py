"""Declared roles and databases on a real cluster (local provider, one node): created,
altered, refused to drop while in use or owning objects (the reason in status), dropped on
`ensure: absent`; passfiles for every login; `pgha-operator psql` with no password in argv
or environment; `rotate passwords --role` for a declared role."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import yaml

from tests.integration.cluster_helpers import (
    CLI,
    ClusterFiles,
    cli,
    query,
    running_cluster,
    status,
    wait_for,
    write_manifest,
)

pytestmark = pytest.mark.integration

NET = "127.0.63"
ROLES = """    roles:
      - {name: reporting, connectionLimit: 5, memberOf: [readers]}
      - {name: readers, login: false}
      - {name: owner_role}
"""
DATABASES = """    databases:
      - {name: shop, owner: reporting, extensions: [pg_trgm]}
      - {name: scratch, owner: app}
"""


def body(roles: str = ROLES, databases: str = DATABASES) -> str:
    return (
        "  etcd: {members: 1}\n  postgres:\n    instances: 1\n"
        + roles
        + databases
        + "  loadBalancer: {instances: 1}\n"
    )


@dataclass
class Live(ClusterFiles):
    def edit(self, roles: str = ROLES, databases: str = DATABASES) -> None:
        write_manifest(self.root, "roles", f"{NET}.0/24", body(roles, databases))

    def apply(self, timeout: int = 120) -> subprocess.CompletedProcess[str]:
        return cli("apply", *self.args(), "--timeout", str(timeout), timeout=timeout + 120)

    def dsn(self, *extra: str) -> str:
        return cli("dsn", *self.args(), *extra, check=True).stdout.strip()

    def superuser(self, sql: str, dbname: str = "postgres") -> list[tuple]:
        conninfo = self.dsn("--user", "postgres", "--node", "node1", "--dbname", dbname)
        return query(conninfo, sql)

    def secrets(self) -> dict:
        return yaml.safe_load((self.state / "secrets.yaml").read_text())

    def rows(self, kind: str) -> dict[str, dict]:
        return {r["name"]: r for r in status(self.manifest, self.state)[kind]}


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    with running_cluster("roles", f"{NET}.0/24", body(), Live) as c:
        yield c


def role_row(live: Live, name: str) -> tuple:
    rows = live.superuser(
        "SELECT rolcanlogin, rolcreatedb, rolconnlimit, rolsuper, "
        "ARRAY(SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
        f"WHERE m.member = r.oid ORDER BY 1) FROM pg_roles r WHERE rolname = '{name}'"
    )
    return rows[0] if rows else ()


def test_declared_roles_and_databases_are_created(live: Live) -> None:
    assert role_row(live, "reporting") == (True, False, 5, False, ["readers"])
    assert role_row(live, "readers") == (False, False, -1, False, [])
    owners = dict(
        live.superuser(
            "SELECT datname, pg_get_userbyid(datdba) FROM pg_database "
            "WHERE datname IN ('shop', 'scratch')"
        )
    )
    assert owners == {"shop": "reporting", "scratch": "app"}
    assert live.superuser("SELECT extname FROM pg_extension WHERE extname = 'pg_trgm'", "shop")
    # The declared login role connects through HAProxy with its passfile, to its database.
    conninfo = live.dsn("--user", "reporting")
    assert "password" not in conninfo and f"passfile={live.state}/passfiles/reporting" in conninfo
    assert query(conninfo, "SELECT current_user, current_database()") == [("reporting", "shop")]
    assert (live.state / "passfiles" / "reporting").stat().st_mode & 0o777 == 0o600
    assert not (live.state / "passfiles" / "readers").exists()  # NOLOGIN: no password
    assert {r["state"] for r in live.rows("roles").values()} == {"present"}
    assert {r["state"] for r in live.rows("databases").values()} == {"present"}


def test_changed_attributes_and_memberships_are_altered(live: Live) -> None:
    changed = ROLES.replace(
        "{name: reporting, connectionLimit: 5, memberOf: [readers]}",
        "{name: reporting, connectionLimit: 7, createdb: true, memberOf: [pg_monitor]}",
    )
    live.edit(roles=changed)
    preview = cli("plan", *live.args(), check=True).stdout
    assert "alter role reporting: createdb, connection limit 5 -> 7" in preview
    assert "grant pg_monitor to reporting" in preview
    res = live.apply()
    assert res.returncode == 0, res.stdout + res.stderr
    assert "alter role reporting" in res.stdout and "revoke readers from reporting" in res.stdout
    assert role_row(live, "reporting") == (True, True, 7, False, ["pg_monitor"])
    live.edit()  # back as it was, for the next tests
    assert live.apply().returncode == 0
    assert role_row(live, "reporting") == (True, False, 5, False, ["readers"])


def test_drops_are_refused_while_in_use_or_owning_then_done(live: Live) -> None:
    live.superuser("CREATE TABLE kept (id int); ALTER TABLE kept OWNER TO owner_role", "app")
    open_conn = psycopg.connect(live.dsn("--dbname", "scratch"), autocommit=True)
    try:
        absent = ROLES.replace("{name: owner_role}", "{name: owner_role, ensure: absent}")
        live.edit(absent, DATABASES.replace("owner: app}", "owner: app, ensure: absent}"))
        res = live.apply(timeout=15)
        assert res.returncode != 0  # cannot converge: the manifest asks for refused drops
        assert "RolesAndDatabases" in res.stderr
        scratch = live.rows("databases")["scratch"]
        assert scratch["state"] == "refused" and "1 connection(s) open" in scratch["reason"]
        owner = live.rows("roles")["owner_role"]
        assert owner["state"] == "refused" and "owns 1 object(s)" in owner["reason"]
        assert live.superuser("SELECT 1 FROM pg_database WHERE datname = 'scratch'")
    finally:
        open_conn.close()
    live.superuser("DROP TABLE kept", "app")
    res = live.apply()
    assert res.returncode == 0, res.stdout + res.stderr
    assert not live.superuser("SELECT 1 FROM pg_database WHERE datname = 'scratch'")
    assert role_row(live, "owner_role") == ()
    assert not (live.state / "passfiles" / "owner_role").exists()
    assert live.rows("databases")["scratch"]["state"] == "absent"


def test_psql_connects_with_no_password_in_argv_or_environment(live: Live) -> None:
    res = cli("psql", *live.args(), "--", "-At", "-c", "select current_user, 1", check=True)
    assert res.stdout.strip() == "app|1"
    proc = subprocess.Popen(
        [*CLI, "psql", *live.args(), "--", "-c", "select pg_sleep(3)"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=Path(__file__).parents[2],
    )
    try:
        passwords = [v for k, v in flatten(live.secrets()) if k != "roles"]
        seen = wait_for("psql running", lambda: psql_processes(proc.pid), timeout=20, step=0.1)
        for cmdline, environ in seen:
            for password in passwords:
                assert password.encode() not in cmdline and password.encode() not in environ
            assert b"PGPASSWORD" not in environ and b"PGPASSFILE=" in environ
    finally:
        assert proc.wait(timeout=30) == 0


def flatten(secrets: dict) -> list[tuple[str, str]]:
    out = [(k, v) for k, v in secrets.items() if isinstance(v, str)]
    return out + [(k, v) for k, v in (secrets.get("roles") or {}).items()]


def psql_processes(pid: int) -> list[tuple[bytes, bytes]]:
    """(cmdline, environ) of `pid` once it runs psql (the CLI execs it: same pid), and of
    its children (Debian's psql wrapper execs the real one)."""
    pids = [pid, *children(pid)]
    seen = []
    for p in pids:
        try:
            cmdline = Path(f"/proc/{p}/cmdline").read_bytes()
            environ = Path(f"/proc/{p}/environ").read_bytes()
        except OSError:
            continue
        if b"psql" in cmdline and b"pgha_operator" not in cmdline:
            seen.append((cmdline, environ))
    return seen


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def test_rotate_passwords_covers_a_declared_role(live: Live) -> None:
    before = live.secrets()["roles"]["reporting"]
    res = cli("rotate", "passwords", *live.args(), "--role", "reporting", "--timeout", "120",
              timeout=240)  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    after = live.secrets()["roles"]["reporting"]
    assert after != before
    assert f":reporting:{after}" in (live.state / "passfiles" / "reporting").read_text()
    conninfo = live.dsn("--user", "reporting")
    assert query(conninfo, "SELECT current_user")[0][0] == "reporting"
