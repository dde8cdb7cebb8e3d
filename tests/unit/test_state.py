"""The state dir: read-only commands write nothing, secrets fail closed, damaged files are
named with what to do, locks keep operators and switchovers apart (no processes)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from pgha_operator.cli import main
from pgha_operator.core import topology
from pgha_operator.core.errors import PermanentError
from pgha_operator.shell.controller import Controller
from pgha_operator.shell.state import StateDir, StateError
from pgha_operator.shell.state import last_applied as last_applied_module
from pgha_operator.shell.state.last_applied import FILE_NAME as LAST_APPLIED
from pgha_operator.shell.state.secrets_store import BACKUP_NAME, FIELDS
from pgha_operator.shell.state.secrets_store import FILE_NAME as SECRETS

DEMO = "manifests/demo.yaml"


@pytest.fixture
def reachable(tmp_path: Path) -> Iterator[Path]:
    """A dir the service user can reach (apply's preflight checks it; pytest's is 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="pgha-state-test-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def no_execute(monkeypatch: pytest.MonkeyPatch) -> None:
    """`apply` in these tests must refuse before acting; were it to act, fail instead of
    starting a real cluster."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("apply acted on a cluster whose state it should have refused")

    monkeypatch.setattr("pgha_operator.shell.controller.execute", refuse)


def applied(tmp_path: Path) -> Path:
    """A state dir as after a first apply: certificates, secrets (and their copy) and
    last-applied."""
    state = tmp_path / "state"
    cluster = Controller([DEMO], state_dir=state).cluster
    StateDir(state).issue_tls(cluster, topology.build(cluster), datetime.now(UTC))
    StateDir(state).load_or_create_secrets()
    StateDir(state).save_last_applied(cluster)
    return state


# --- read-only commands ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("manifest", "command"),
    [
        (DEMO, "plan"),
        (DEMO, "status"),
        ("manifests/vagrant.yaml", "plan"),
        ("manifests/vagrant.yaml", "status"),
    ],
)
def test_plan_and_status_write_nothing(
    tmp_path: Path, manifest: str, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "fresh"
    assert main([command, "-f", manifest, "--state-dir", str(state)]) in (0, 3)
    assert not state.exists()


def test_status_of_an_applied_cluster_adds_no_file(tmp_path: Path) -> None:
    state = applied(tmp_path)
    before = sorted(p.name for p in state.iterdir())
    assert main(["status", "-f", DEMO, "--state-dir", str(state)]) == 3
    assert sorted(p.name for p in state.iterdir()) == before


# --- secrets -----------------------------------------------------------------------------------


def test_first_secrets_are_written_with_a_copy_0600(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    secrets = state.load_or_create_secrets()
    for name in (SECRETS, BACKUP_NAME):
        path = state.path / name
        assert path.stat().st_mode & 0o777 == 0o600
        assert yaml.safe_load(path.read_text())["rest_password"] == secrets.rest_password
    assert sorted(p.name for p in state.path.iterdir()) == [SECRETS, BACKUP_NAME]  # no temp
    assert state.load_or_create_secrets() == secrets


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("", "is empty"),
        ("superuser_password: abc\n", "has no replication_password, admin_password"),
        ("superuser_password: [unclosed\n", "is damaged (not YAML"),
        ("- a list\n", "not a mapping"),
        (None, "is missing"),
    ],
)
def test_a_damaged_secrets_file_of_a_live_cluster_is_refused(
    tmp_path: Path, content: str | None, problem: str
) -> None:
    state = applied(tmp_path)
    path = state / SECRETS
    if content is None:
        path.unlink()
    else:
        path.write_text(content)
    with pytest.raises(StateError) as err:
        StateDir(state).load_or_create_secrets()
    message = str(err.value)
    assert str(path) in message and problem in message
    assert f"cp -p {state / BACKUP_NAME} {path}" in message
    assert (path.read_text() if path.exists() else None) == content  # nothing re-keyed


def test_apply_refuses_an_emptied_secrets_file_and_keeps_it(
    reachable: Path, no_execute: None, capsys: pytest.CaptureFixture[str]
) -> None:
    state = applied(reachable)
    (state / SECRETS).write_text("")
    kept = (state / BACKUP_NAME).read_text()
    assert main(["apply", "-f", DEMO, "--state-dir", str(state), "--timeout", "5"]) == 1
    err = capsys.readouterr().err
    assert f"error: {state / SECRETS}: is empty" in err and "Traceback" not in err
    assert (state / SECRETS).read_text() == "" and (state / BACKUP_NAME).read_text() == kept
    assert not (state / "machines").exists()  # nothing was created


def test_the_kept_copy_restores_the_cluster(tmp_path: Path) -> None:
    state = applied(tmp_path)
    before = StateDir(state).secrets()
    (state / SECRETS).write_text("")
    os.system(f"cp -p {state / BACKUP_NAME} {state / SECRETS}")  # what the error says to do
    assert StateDir(state).load_or_create_secrets() == before


@pytest.mark.parametrize("damage", ["directory", "not utf-8"])
def test_an_unreadable_secrets_file_is_named_not_a_traceback(
    reachable: Path, no_execute: None, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    state = applied(reachable)
    path = state / SECRETS
    path.unlink()
    if damage == "directory":
        path.mkdir()
    else:
        path.write_bytes(b"\xff\xfe\x00")
    assert main(["apply", "-f", DEMO, "--state-dir", str(state), "--timeout", "5"]) == 1
    err = capsys.readouterr().err
    assert f"error: {path}:" in err and "Traceback" not in err


def test_secrets_are_read_once_until_the_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pgha_operator.shell.state import secrets_store

    state = StateDir(tmp_path / "state")
    first = state.load_or_create_secrets()
    reads = []
    real = secrets_store.read_fields
    monkeypatch.setattr(secrets_store, "read_fields", lambda p: reads.append(p) or real(p))
    for _ in range(3):
        assert state.load_or_create_secrets() == first and state.secrets() == first
    assert len(reads) == 1  # the read path once; the acting path still cached
    data = {f: "changed" for f in FIELDS}
    (state.path / SECRETS).write_text(yaml.safe_dump(data))
    assert state.secrets() is not None and state.secrets().rest_password == "changed"


# --- last-applied ------------------------------------------------------------------------------


@pytest.mark.parametrize("cut", ["truncated", "not yaml", "empty"])
def test_a_damaged_last_applied_is_reported(tmp_path: Path, cut: str) -> None:
    state = applied(tmp_path)
    path = state / LAST_APPLIED
    text = path.read_text()
    path.write_text(
        {"truncated": text[: len(text) // 2], "not yaml": "spec: [unclosed\n", "empty": ""}[cut]
    )
    with pytest.raises(StateError) as err:
        Controller([DEMO], state_dir=state)
    assert str(path) in str(err.value) and "delete the file" in str(err.value)
    # status and destroy still work, and say it
    ctl = Controller([DEMO], state_dir=state, fall_back_to_last_applied=True)
    assert ctl.manifest.state_error and str(path) in ctl.manifest.state_error


def test_last_applied_carries_a_checksum_and_reads_back(tmp_path: Path) -> None:
    state = applied(tmp_path)
    assert (state / LAST_APPLIED).read_text().startswith("# pgha-operator last-applied sha256=")
    loaded = StateDir(state).last_applied("demo")
    assert loaded is not None and loaded.cluster == Controller([DEMO], state_dir=state).cluster


def test_last_applied_is_rendered_again_only_when_the_cluster_or_file_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state_dir = StateDir(tmp_path / "state")
    cluster = Controller([DEMO], state_dir=state_dir.path).cluster
    renders: list[object] = []
    real = last_applied_module.render
    monkeypatch.setattr(last_applied_module, "render", lambda c: renders.append(c) or real(c))
    state_dir.save_last_applied(cluster)
    state_dir.save_last_applied(cluster)  # the same object over an untouched file
    assert len(renders) == 1
    (state_dir.path / LAST_APPLIED).unlink()  # deleted by hand (the documented remedy)
    state_dir.save_last_applied(cluster)
    assert len(renders) == 2 and (state_dir.path / LAST_APPLIED).exists()
    state_dir.save_last_applied(cluster.model_copy(deep=True))  # another accepted cluster
    assert len(renders) == 3


# --- locks -------------------------------------------------------------------------------------


def test_a_second_switchover_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = applied(tmp_path)
    first = StateDir(state)
    first.switchover_lock.acquire("switchover")  # as a switchover in another process
    try:
        assert main(["switchover", "-f", DEMO, "--state-dir", str(state)]) == 1
    finally:
        first.switchover_lock.release()
    err = capsys.readouterr().err
    assert f"another switchover (pid {os.getpid()} (switchover)) is in progress" in err


def test_switchover_holds_the_operator_lock_when_no_operator_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pgha_operator.shell import switchover

    state = applied(tmp_path)
    seen: list[str | None] = []

    def fake_switch(ctl: Controller, *args: object) -> switchover.SwitchoverDone:
        seen.append(StateDir(state).operator_running())
        with pytest.raises(PermanentError, match=r"another operator \(pid \d+ \(switchover\)\)"):
            Controller([DEMO], state_dir=state).lock()  # an apply started meanwhile
        return switchover.SwitchoverDone("node2", 1.0, None)

    monkeypatch.setattr(switchover, "_switch", fake_switch)
    assert main(["switchover", "-f", DEMO, "--state-dir", str(state)]) == 0
    assert seen == [f"pid {os.getpid()} (switchover)"]
    assert StateDir(state).operator_running() is None  # released


def test_switchover_goes_ahead_beside_a_running_operator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pgha_operator.shell import switchover

    state = applied(tmp_path)
    running = Controller([DEMO], state_dir=state)
    running.lock("run")
    monkeypatch.setattr(
        switchover,
        "_switch",
        lambda ctl, to, t, p, operator: switchover.SwitchoverDone("node2", 1.0, operator),
    )
    try:
        assert main(["switchover", "-f", DEMO, "--state-dir", str(state)]) == 0
    finally:
        running.unlock()
    assert "beside the running operator (pid" in capsys.readouterr().err


def test_status_never_takes_the_lock_it_probes(tmp_path: Path) -> None:
    state = applied(tmp_path)
    assert StateDir(state).operator_running() is None
    running = Controller([DEMO], state_dir=state)
    running.lock("run")
    try:
        assert StateDir(state).operator_running() == f"pid {os.getpid()} (run)"
    finally:
        running.unlock()
