"""Password rotation: the pure order of steps, the state files a crash leaves, and the
operator cycle that finishes a rotation (against the fake world)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from structlog.testing import capture_logs

from pgha_operator.cli import main
from pgha_operator.core.errors import PermanentError
from pgha_operator.core.render import Secrets
from pgha_operator.core.rotation import (
    BY_NAME,
    LOGINS,
    alter_order,
    effective_secrets,
    previous_of,
    rotated,
    rotation_steps,
    select_logins,
)
from pgha_operator.shell import loops, rotate
from pgha_operator.shell.controller import Controller
from pgha_operator.shell.providers import local as local_provider
from pgha_operator.shell.state import StateDir, StateError, secrets_store
from pgha_operator.shell.state.lock import FileLock
from tests.fakeworld.drift import manifest
from tests.fakeworld.world import FakeWorld
from tests.unit.test_controller_fakeworld import controller_for

OLD = Secrets(
    superuser_password="su-old",
    replication_password="repl-old",
    admin_password="admin-old",
    rest_password="rest-old",
    app_password="app-old",
    stats_password="stats-old",
    pooler_password="pooler-old",
)
NEW = Secrets(
    superuser_password="su-new",
    replication_password="repl-new",
    admin_password="admin-new",
    rest_password="rest-new",
    app_password="app-new",
    stats_password="stats-new",
    pooler_password="pooler-new",
)


@pytest.fixture(autouse=True)
def _logs() -> Iterator[list[dict[str, object]]]:
    # The cycle logs; structlog may still hold an earlier test's closed stderr.
    with capture_logs() as logs:
        yield logs


def kinds(names: list[str] | None) -> list[tuple[str, tuple[str, ...]]]:
    return [(s.kind, s.logins) for s in rotation_steps(select_logins(names))]


# --- the pure plan ------------------------------------------------------------------------------


def test_a_database_role_is_saved_then_altered_then_carried_by_patroni_yml() -> None:
    assert kinds(["replicator"]) == [
        ("save", ("replicator",)),
        ("alter", ("replicator",)),
        ("reload", ("replicator",)),
        ("verify", ("replicator",)),
    ]


def test_a_role_no_config_carries_has_no_reload() -> None:
    assert kinds(["app"]) == [("save", ("app",)), ("alter", ("app",)), ("verify", ("app",))]


def test_rest_and_stats_logins_have_no_alter_only_their_config_reloaded() -> None:
    assert kinds(["patroni", "stats"]) == [
        ("save", ("patroni", "stats")),
        ("reload", ("patroni",)),
        ("reload", ("stats",)),
        ("verify", ("patroni", "stats")),
    ]


def test_all_roles_alter_the_superuser_last_and_before_any_reload() -> None:
    steps = kinds(None)
    assert [k for k, _ in steps] == ["save", "alter", "reload", "reload", "reload", "verify"]
    assert steps[1][1] == ("replicator", "admin", "app", "pgha_pooler", "postgres")
    assert steps[2] == ("reload", ("postgres", "replicator", "patroni"))
    assert steps[3] == ("reload", ("stats",))
    assert steps[4] == ("reload", ("pgha_pooler",))
    assert set(steps[0][1]) == set(BY_NAME) == set(steps[-1][1])


def test_every_secret_field_is_rotatable() -> None:
    assert {x.field for x in LOGINS} == set(secrets_store.FIELDS)


def test_an_unknown_role_is_refused_naming_the_choices() -> None:
    with pytest.raises(PermanentError, match="no such role nobody: choose from postgres"):
        select_logins(["nobody", "app"])


def test_alter_order_takes_only_pending_database_fields_superuser_last() -> None:
    pending = ["superuser_password", "rest_password", "app_password"]
    assert [x.name for x in alter_order(pending)] == ["app", "postgres"]


def test_effective_secrets_keep_old_passwords_while_alter_role_is_pending() -> None:
    logins = select_logins(["postgres", "patroni"])
    previous = previous_of(OLD, logins)
    assert previous == {"superuser_password": "su-old"}  # REST: nothing to ALTER
    new = rotated(OLD, {"superuser_password": "su-new", "rest_password": "rest-new"})
    effective = effective_secrets(new, previous)
    assert effective.superuser_password == "su-old" and effective.rest_password == "rest-new"
    assert effective_secrets(new, None) == new


# --- the state files ----------------------------------------------------------------------------


def test_begin_rotation_keeps_the_old_passwords_before_saving_the_new(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    secrets_store.save(tmp_path, OLD)
    state.begin_rotation(NEW, previous_of(OLD, LOGINS))
    assert state.secrets() == NEW
    backup = yaml.safe_load((tmp_path / secrets_store.BACKUP_NAME).read_text())
    assert backup["superuser_password"] == "su-new"  # the copy in step
    assert state.pending_rotation() == {
        "superuser_password": "su-old",
        "replication_password": "repl-old",
        "admin_password": "admin-old",
        "app_password": "app-old",
        "pooler_password": "pooler-old",
    }
    assert (tmp_path / "rotation.yaml").stat().st_mode & 0o777 == 0o600
    state.end_rotation()
    assert state.pending_rotation() is None


def test_a_crash_while_saving_leaves_old_passwords_findable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = StateDir(tmp_path)
    secrets_store.save(tmp_path, OLD)

    def crash(folder: Path, secrets: Secrets) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(secrets_store, "save", crash)
    with pytest.raises(OSError):
        state.begin_rotation(NEW, previous_of(OLD, LOGINS))
    assert state.secrets() == OLD
    assert effective_secrets(OLD, state.pending_rotation()) == OLD


def test_a_damaged_rotation_file_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / "rotation.yaml").write_text("previous: [1, 2]\n")
    with pytest.raises(StateError, match="rotation.yaml: is damaged"):
        StateDir(tmp_path).pending_rotation()


# --- the operator cycle finishes a rotation -----------------------------------------------------


def converged_controller(tmp_path: Path) -> tuple[FakeWorld, Controller]:
    world = FakeWorld.for_cluster(manifest())
    ctl = controller_for(world, tmp_path, pytest.MonkeyPatch())
    for _ in range(30):
        report = ctl.cycle()
        world.tick()
        if report.converged:
            return world, ctl
    raise AssertionError(f"no convergence: {report.decision}")


def patroni_passwords(world: FakeWorld) -> set[str]:
    """Every superuser and replication password the nodes' patroni.yml files hold."""
    found = set()
    for machine in world.machines.values():
        for path, data in machine.files.items():
            if path.endswith("patroni.yml"):
                auth = yaml.safe_load(data)["postgresql"]["authentication"]
                found |= {auth["superuser"]["password"], auth["replication"]["password"]}
    return found


def rotate_in_state(ctl: Controller, names: list[str]) -> tuple[Secrets, Secrets]:
    old = ctl.state.secrets()
    assert old is not None
    logins = select_logins(names)
    new = rotated(old, {x.field: f"{x.name}-new" for x in logins})
    ctl.state.begin_rotation(new, previous_of(old, logins))
    return old, new


def test_configs_keep_the_old_password_until_alter_role_ran(tmp_path: Path) -> None:
    world, ctl = converged_controller(tmp_path)
    old, _ = rotate_in_state(ctl, ["replicator"])
    report = ctl.cycle(act=False)  # what a `plan` beside the rotation sees: nothing to write
    assert report.plan.actions == () and report.converged
    assert old.replication_password in patroni_passwords(world)


def test_the_next_cycle_alters_the_roles_then_writes_the_configs(tmp_path: Path) -> None:
    world, ctl = converged_controller(tmp_path)
    old, new = rotate_in_state(ctl, ["postgres", "replicator"])
    world.patroni.passwords = {"postgres": old.superuser_password}
    report = ctl.cycle()
    assert world.patroni.passwords == {"postgres": "postgres-new", "replicator": "replicator-new"}
    assert ctl.state.pending_rotation() is None
    assert any("patroni.yml" in a.describe for a in report.plan.actions)
    assert patroni_passwords(world) == {"postgres-new", "replicator-new"}


def test_a_crash_after_the_superusers_alter_role_is_finished_with_its_new_password(
    tmp_path: Path,
) -> None:
    world, ctl = converged_controller(tmp_path)
    old, new = rotate_in_state(ctl, ["postgres", "app"])
    # ALTER ROLE postgres ran, then the command died before rotation.yaml was removed.
    world.patroni.passwords = {"postgres": new.superuser_password}
    ctl.cycle()
    assert ctl.state.pending_rotation() is None
    assert world.patroni.passwords["postgres"] == new.superuser_password
    assert patroni_passwords(world) == {new.superuser_password, old.replication_password}


def test_without_a_primary_the_rotation_waits_and_configs_stay_old(tmp_path: Path) -> None:
    world, ctl = converged_controller(tmp_path)
    old, _ = rotate_in_state(ctl, ["replicator"])
    world.patroni.passwords = {"postgres": "something else"}  # the superuser cannot log in
    ctl.cycle()
    assert ctl.state.pending_rotation() is not None
    assert patroni_passwords(world) == {old.superuser_password, old.replication_password}


# --- the command line ---------------------------------------------------------------------------


def test_dry_run_prints_the_steps_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rotate", "passwords", "--dry-run", "--role", "replicator"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("1. save new passwords") and "ALTER ROLE" in out[1]
    assert "reload patroni" in out[2] and out[3].startswith("4. cluster converged")


def test_rotate_before_apply_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["rotate", "passwords", "--state-dir", str(tmp_path / "none")])
    assert code == 1 and "run apply first" in capsys.readouterr().err


def test_rotate_help_names_every_role(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["rotate", "passwords", "--help"])
    out = capsys.readouterr().out
    assert all(f"  {name} " in out for name in BY_NAME)
    assert "running" in out and "ALTER ROLE" in out


# --- a cluster made before TLS ------------------------------------------------------------------

PRE_TLS_MANIFEST = """\
apiVersion: pgha/v1
kind: Cluster
metadata: {name: oldone}
spec:
  provider: {type: local, network: 127.0.97.0/24}
  etcd: {members: 1}
  postgres: {instances: 2}
  loadBalancer: {instances: 1}
"""


def files_in(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.endswith(".lock")
    }


def test_apply_refuses_a_cluster_made_before_tls_and_says_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The host's binaries and the postgres user's access are not what this test is about.
    monkeypatch.setattr(local_provider, "preflight", lambda *args: None)
    manifest_file = tmp_path / "oldone.yaml"
    manifest_file.write_text(PRE_TLS_MANIFEST)
    state = tmp_path / "state"
    state.mkdir()
    secrets_store.save(state, OLD)  # secrets.yaml and its copy: a cluster was made here
    (state / "machines" / "node1").mkdir(parents=True)
    (state / "machines" / "node1" / "marker").write_text("data of the running cluster")
    before = files_in(state)
    code = main(["apply", "-f", str(manifest_file), "--state-dir", str(state), "--timeout", "5"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"{state / 'tls'}: is missing" in err
    assert "created by a pgha-operator without TLS" in err
    assert "Nothing was changed" in err and "pg_dumpall" in err and "new cluster" in err
    assert files_in(state) == before and not (state / "tls").exists()


def test_secrets_written_before_the_first_apply_are_no_cluster_made_before_tls(
    tmp_path: Path,
) -> None:
    # `dsn` before any apply writes secrets.yaml (twice: its roles, its copy); the first
    # apply must then issue the certificates, not refuse a "cluster made before TLS".
    state = StateDir(tmp_path / "state")
    state.load_or_create_secrets()
    state.load_or_create_secrets(["app"])
    assert (state.path / secrets_store.BACKUP_NAME).exists()
    assert state.holds_cluster() and not state.made_cluster()
    (state.path / "machines" / "node1").mkdir(parents=True)
    assert state.made_cluster()


# --- the command's executor, against the fake world ---------------------------------------------


def test_rotate_passwords_acts_itself_when_no_operator_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world, ctl = converged_controller(tmp_path)
    old = ctl.state.secrets()
    assert old is not None
    world.patroni.passwords = {"postgres": old.superuser_password}
    # The loops' waits move the fake world's clock instead of the real one.
    monkeypatch.setattr(rotate.time, "sleep", lambda s: world.tick())
    monkeypatch.setattr(loops.time, "sleep", lambda s: world.tick())
    lines: list[str] = []
    done = rotate.rotate_passwords(ctl, ["postgres", "replicator"], 60, lines.append)
    new = ctl.state.secrets()
    assert new is not None and done.operator is None and done.roles == ("postgres", "replicator")
    assert world.patroni.passwords == {
        "postgres": new.superuser_password,
        "replicator": new.replication_password,
    }
    assert new.superuser_password != old.superuser_password
    assert new.admin_password == old.admin_password  # not asked for
    assert patroni_passwords(world) == {new.superuser_password, new.replication_password}
    assert [line.split(":")[0] for line in lines] == [
        "save new passwords in secrets.yaml, the old ones kept",
        "ALTER ROLE on the primary",
        "write patroni.yml everywhere, reload patroni",
        "cluster converged, new passwords accepted",
    ]
    assert not ctl.state.operator_lock.held and not ctl.state.rotation_lock.held


def test_a_second_rotation_is_refused_while_one_runs(tmp_path: Path) -> None:
    _, ctl = converged_controller(tmp_path)
    other = FileLock(ctl.state.rotation_lock.path)
    other.acquire("rotate passwords")
    try:
        with pytest.raises(PermanentError, match="another rotation .* is in progress"):
            rotate.rotate_passwords(ctl, None, 5, print)
    finally:
        other.release()
    assert ctl.state.pending_rotation() is None  # nothing saved
