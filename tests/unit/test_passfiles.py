"""Passwords of declared roles (secrets.yaml and its copy, rotation) and the passfiles that
keep every password off command lines: their text, their files, and psql's environment."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from structlog.testing import capture_logs

from pgha_operator.cli.connect import Target, dsn_text, psql_environment
from pgha_operator.core import topology
from pgha_operator.core.passfile import endpoints, escape, passfile_text, passfiles
from pgha_operator.core.render import Secrets
from pgha_operator.core.rotation import (
    alter_order,
    effective_secrets,
    previous_of,
    rotated,
    select_logins,
)
from pgha_operator.core.spec import parse_text
from pgha_operator.shell.state import passfiles as passfile_store
from pgha_operator.shell.state import secrets_store
from tests.unit.test_rotation import converged_controller, rotate_in_state
from tests.unit.test_spec_catalog import declaring

SECRETS = Secrets("su", "repl", "adm", "rest", "app-pw", "stats")
DECLARED = """    roles:
      - {name: reporting}
      - {name: readers, login: false}
      - {name: gone, ensure: absent}"""


def cluster(block: str = DECLARED):  # noqa: ANN201
    return parse_text(declaring(block), "m.yaml")[0][0].cluster


def test_pgpass_fields_escape_colons_and_backslashes() -> None:
    assert escape(r"a:b\c") == r"a\:b\\c"
    text = passfile_text("u", "p:w", [("10.0.0.1", 5000), ("10.0.0.1", 5000), ("h", 5432)])
    assert text == "10.0.0.1:5000:*:u:p\\:w\nh:5432:*:u:p\\:w\n"  # each endpoint once


def test_passfiles_list_the_load_balancer_and_every_node_and_only_login_roles() -> None:
    c = cluster()
    topo = topology.build(c)
    secrets = SECRETS.with_role_passwords({"reporting": "rep-pw"})
    files = passfiles(c, topo, secrets)
    assert set(files) == {"app", "admin", "postgres", "reporting"}  # no NOLOGIN, no absent
    assert files["app"].splitlines() == [
        "127.0.10.201:5000:*:app:app-pw",
        "127.0.10.201:5001:*:app:app-pw",
        "127.0.10.11:5432:*:app:app-pw",
        "127.0.10.12:5432:*:app:app-pw",
        "127.0.10.13:5432:*:app:app-pw",
    ]
    assert "reporting:rep-pw" in files["reporting"]
    # The load balancer refuses the superuser: its passfile names the nodes only.
    assert ("127.0.10.201", 5000) not in endpoints(c, topo, "postgres")
    assert all(":5432:" in line for line in files["postgres"].splitlines())


def test_passfiles_are_0600_written_only_when_changed_and_pruned(tmp_path: Path) -> None:
    assert passfile_store.sync(tmp_path, {"app": "a\n", "old": "o\n"}) == ["app", "old"]
    path = tmp_path / "passfiles" / "app"
    assert path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "passfiles").stat().st_mode & 0o777 == 0o700
    inode = path.stat().st_ino
    assert passfile_store.sync(tmp_path, {"app": "a\n"}) == []  # unchanged: not rewritten
    assert path.stat().st_ino == inode
    assert not (tmp_path / "passfiles" / "old").exists()  # a role no longer declared
    assert passfile_store.sync(tmp_path, {"app": "b\n"}) == ["app"]
    assert path.read_text() == "b\n"


def test_declared_roles_get_a_password_once_kept_in_the_file_and_its_copy(
    tmp_path: Path,
) -> None:
    first = secrets_store.load_or_create(tmp_path, False, ["reporting"])
    password = first.role_password("reporting")
    assert password and len(password) >= 24
    for name in ("secrets.yaml", "secrets.yaml.bak"):
        path = tmp_path / name
        assert path.stat().st_mode & 0o777 == 0o600
        assert yaml.safe_load(path.read_text())["roles"] == {"reporting": password}
    again = secrets_store.load_or_create(tmp_path, True, ["reporting", "other"])
    assert again.role_password("reporting") == password  # never re-keyed
    assert again.role_password("other") not in (None, password)
    assert secrets_store.read_secrets(tmp_path) == again
    assert "reporting" not in repr(again) and password not in repr(again)


def test_rotation_covers_declared_login_roles() -> None:
    secrets = SECRETS.with_role_passwords({"reporting": "old"})
    logins = select_logins(["reporting"], ["reporting"])
    assert [(x.name, x.field, x.database) for x in logins] == [
        ("reporting", "role:reporting", True)
    ]
    previous = previous_of(secrets, logins)
    assert previous == {"role:reporting": "old"}
    new = rotated(secrets, {"role:reporting": "new"})
    assert new.role_password("reporting") == "new" and new.app_password == "app-pw"
    # Until ALTER ROLE ran, the old password is the one in force (configs, passfiles).
    assert effective_secrets(new, previous).role_password("reporting") == "old"
    assert [x.name for x in alter_order(previous)] == ["reporting"]
    assert len(select_logins(None, ["reporting"])) == len(select_logins(None)) + 1


def test_rotating_an_undeclared_role_is_refused_naming_the_choices() -> None:
    with pytest.raises(Exception, match="no such role ghost: choose from .*reporting"):
        select_logins(["ghost"], ["reporting"])


@pytest.fixture(autouse=True)
def _logs() -> Iterator[None]:
    # The cycle logs; structlog may still hold an earlier test's closed stderr.
    with capture_logs():
        yield


TARGET = Target("127.0.10.201", 5000, "app", "app", "/s/tls/ca.crt", Path("/s/passfiles/app"))


def test_dsn_names_the_passfile_and_holds_no_password() -> None:
    text = dsn_text(TARGET)
    assert "passfile=/s/passfiles/app" in text and "password" not in text
    assert "sslmode=verify-full sslrootcert=/s/tls/ca.crt" in text
    assert dsn_text(TARGET, password="pw").endswith("password=pw")


def test_psql_gets_its_settings_in_the_environment_and_never_pgpassword() -> None:
    env = psql_environment(TARGET, {"PATH": os.environ.get("PATH", ""), "PGPASSWORD": "leak"})
    assert "PGPASSWORD" not in env
    assert env["PGPASSFILE"] == "/s/passfiles/app"
    assert (env["PGHOST"], env["PGPORT"], env["PGUSER"], env["PGDATABASE"]) == (
        "127.0.10.201",
        "5000",
        "app",
        "app",
    )
    assert (env["PGSSLMODE"], env["PGSSLROOTCERT"]) == ("verify-full", "/s/tls/ca.crt")


def test_an_acting_cycle_keeps_the_passfiles_and_follows_a_rotation(tmp_path: Path) -> None:
    _, ctl = converged_controller(tmp_path)
    app = ctl.state.passfile("app")
    secrets = ctl.state.secrets()
    assert secrets is not None
    assert f":app:{secrets.app_password}\n" in app.read_text()
    assert app.stat().st_mode & 0o777 == 0o600
    _, new = rotate_in_state(ctl, ["app"])
    ctl.cycle()  # ALTER ROLE on the primary, then the passfile carries the new password
    assert f":app:{new.app_password}\n" in app.read_text()


def test_a_reading_cycle_writes_no_passfile(tmp_path: Path) -> None:
    _, ctl = converged_controller(tmp_path)
    folder = ctl.state.passfile("app").parent
    for path in folder.iterdir():
        path.unlink()
    ctl.cycle(act=False)
    assert list(folder.iterdir()) == []
