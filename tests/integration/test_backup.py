"""Backups with real pgBackRest on a lean cluster (local provider: one etcd member, two
PostgreSQL nodes, one HAProxy): WAL archived right after bootstrap (the operator created
and checked the stanza), the first full backup taken by the running operator, a backup
taken from the replica on demand, the backups listed and in status, a repository PostgreSQL
cannot write making the cluster Degraded until it can again, and destroy keeping the
repository (a new cluster of the same name continues it) unless told to delete it."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.cluster_helpers import (
    Operator,
    cli,
    kill_leftovers,
    make_state_root,
    postmaster_pid,
    query,
    service_pid,
    wait_for,
    write_manifest,
)

pytestmark = pytest.mark.integration

NET = "127.0.74"  # etcd1 .101, node1-4 .11-.14, haproxy1 .201


def body(repository: Path, instances: int = 2) -> str:
    return (
        "  etcd: {members: 1}\n"
        f"  postgres: {{instances: {instances}}}\n"
        "  loadBalancer: {instances: 1}\n"
        f"  backup: {{repository: {{path: {repository}}}, retention: {{full: 2}}}}\n"
    )


@dataclass
class Live:
    root: Path
    manifest: Path
    state: Path
    repository: Path

    def args(self) -> list[str]:
        return ["-f", str(self.manifest), "--state-dir", str(self.state)]

    def superuser(self, sql: str, node: str | None = None) -> list[tuple]:
        """On `node`, or on the primary."""
        for name in [node] if node else ["node1", "node2"]:
            conninfo = cli("dsn", *self.args(), "--user", "postgres", "--node", name, check=True)
            if node or not query(conninfo.stdout.strip(), "SELECT pg_is_in_recovery()")[0][0]:
                return query(conninfo.stdout.strip(), sql)
        raise AssertionError("no primary among node1, node2")

    def backups(self) -> dict:
        return json.loads(cli("backups", *self.args(), "--json", check=True).stdout)


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    root = make_state_root()
    repository = root / "backups"
    manifest = write_manifest(root, "bk", f"{NET}.0/24", body(repository))
    c = Live(root, manifest, root / "state", repository)
    try:
        res = cli("apply", *c.args(), "--timeout", "240", timeout=360)
        assert res.returncode == 0, f"apply failed:\n{res.stdout}\n{res.stderr}"
        yield c
    finally:
        if c.state.exists():
            cli("destroy", *c.args(), "--yes", "--delete-backups", timeout=180)
        kill_leftovers(c.state)
        shutil.rmtree(root, ignore_errors=True)


def test_wal_is_archived_after_bootstrap(live: Live) -> None:
    # apply converged only once the stanza was created and `pgbackrest check` passed.
    assert (live.repository / "backup" / "bk" / "backup.info").is_file()
    assert (live.repository / "archive" / "bk" / "archive.info").is_file()
    assert live.superuser("SHOW archive_mode") == [("on",)]
    # A WAL switch reaches the repository: the archiver counts it.
    before = live.superuser("SELECT archived_count FROM pg_stat_archiver")[0][0]
    # A switch only ends a segment that holds WAL: write some first (its own statement).
    live.superuser("CREATE TABLE IF NOT EXISTS t AS SELECT 1 AS x")
    live.superuser("SELECT pg_switch_wal()")
    wait_for(
        "a switched WAL segment archived",
        lambda: live.superuser("SELECT archived_count FROM pg_stat_archiver")[0][0] > before,
        30,
    )
    info = live.backups()
    assert info["status"] == "no valid backups" and info["walMax"]


def test_the_running_operator_takes_the_first_full_backup(live: Live) -> None:
    operator = Operator(live.manifest, live.state)
    try:
        wait_for("a first full backup", lambda: live.backups()["backups"], 120)
        wait_for("the backup logged", lambda: "scheduled backup done" in operator.output(), 30)
    finally:
        operator.stop()
    [first] = live.backups()["backups"]
    assert first["type"] == "full", first
    # Nothing else is due (the schedule's slots are days apart): one backup, not one a cycle.
    assert operator.output().count("scheduled backup started") == 1, operator.output()


def test_backup_from_the_replica_is_listed(live: Live) -> None:
    res = cli("backup", *live.args(), "--type", "diff", timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "diff backup" in res.stdout and "from replica node" in res.stdout, res.stdout
    info = live.backups()
    assert info["status"] == "ok"
    kinds = [b["type"] for b in info["backups"]]
    assert kinds == ["full", "diff"], info
    full = info["backups"][0]
    assert full["size"] > 10_000_000 and full["walStart"] and full["stop"] >= full["start"]
    table = cli("backups", *live.args(), check=True).stdout
    assert full["label"] in table and "diff" in table
    shown = json.loads(cli("status", *live.args(), "--json", timeout=60).stdout)
    assert shown["backup"]["lastBackup"]["label"] == info["backups"][-1]["label"]
    assert not shown["backup"]["archiver"]["failing"]
    [healthy] = [c for c in shown["conditions"] if c["type"] == "BackupsHealthy"]
    assert healthy["status"] == "True", healthy


def backups_condition(live: Live) -> dict:
    shown = json.loads(cli("status", *live.args(), "--json", timeout=60).stdout)
    [condition] = [c for c in shown["conditions"] if c["type"] == "BackupsHealthy"]
    return {**condition, "phase": shown["phase"]}


def test_failing_archiving_degrades_the_cluster_until_fixed(live: Live) -> None:
    # Every directory of the stanza's archive read-only: PostgreSQL's user (archive-push)
    # can no longer write WAL there, whichever folder the next segment goes to.
    folders = [p for p in (live.repository / "archive" / "bk").rglob("*") if p.is_dir()]
    folders.append(live.repository / "archive" / "bk")
    modes = {p: p.stat().st_mode & 0o777 for p in folders}
    for p in folders:
        p.chmod(0o500)
    try:
        live.superuser("CREATE TABLE IF NOT EXISTS u AS SELECT 1 AS x")
        live.superuser("SELECT pg_switch_wal()")
        failing = wait_for(
            "BackupsHealthy false",
            lambda: (c := backups_condition(live))["status"] == "False" and c,
            60,
        )
        assert failing["reason"].startswith("ArchivingFailing: WAL "), failing
        assert failing["phase"] == "Degraded" and "pg_wal" in failing["reason"]
    finally:
        for p, mode in modes.items():
            p.chmod(mode)
    # PostgreSQL retries the segment by itself (within a minute); nothing else to repair.
    wait_for("BackupsHealthy true again", lambda: backups_condition(live)["status"] == "True", 120)


def primary_name(live: Live) -> str:
    for name in ("node1", "node2"):
        with contextlib.suppress(Exception):
            if not live.superuser("SELECT pg_is_in_recovery()", name)[0][0]:
                return name
    raise AssertionError("no primary")


def kill_machine(state: Path, machine: str) -> None:
    """SIGKILL every process of one local machine (tagged with its root), as a crash."""
    tag = f"PGHA_MACHINE={state}/machines/{machine}".encode()
    pids = [service_pid(state, machine, "patroni"), postmaster_pid(state, machine)]
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and tag in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
    for pid in pids:
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def archived(live: Live, segment: str) -> bool:
    folder = live.repository / "archive" / "bk" / "15-1" / segment[:16]
    return any(folder.glob(f"{segment}-*"))


def test_wal_the_dead_primary_had_not_archived_reaches_the_repository(live: Live) -> None:
    """archive_mode=on: a promoted replica does not archive what it received; the operator
    pushes the older timeline's segments from the new primary's pg_wal after the failover."""
    old = primary_name(live)
    new = "node2" if old == "node1" else "node1"
    folders = [p for p in (live.repository / "archive" / "bk").rglob("*") if p.is_dir()]
    folders.append(live.repository / "archive" / "bk")
    modes = {p: p.stat().st_mode & 0o777 for p in folders}
    unarchived = []
    try:
        for p in folders:
            p.chmod(0o500)  # the old primary cannot archive from here on
        for i in range(2):
            live.superuser(f"CREATE TABLE gap{i} AS SELECT 1 AS x", old)
            unarchived.append(
                live.superuser("SELECT pg_walfile_name(pg_current_wal_lsn())", old)[0][0]
            )
            live.superuser("SELECT pg_switch_wal()", old)
        target = live.superuser("SELECT pg_current_wal_lsn()::text", old)[0][0]
        wait_for(
            f"{new} to have received the segments",
            lambda: live.superuser(f"SELECT pg_last_wal_receive_lsn() >= '{target}'::pg_lsn", new)[
                0
            ][0],
            30,
        )
        kill_machine(live.state, old)  # its archiver too: it must not push them later
        assert unarchived and not any(archived(live, s) for s in unarchived)
    finally:
        for p, mode in modes.items():
            p.chmod(mode)
    wait_for(f"{new} promoted", lambda: primary_name(live) == new, 90)
    res = cli("apply", *live.args(), "--timeout", "240", timeout=360)
    assert res.returncode == 0, f"apply failed:\n{res.stdout}\n{res.stderr}"
    assert "archive the older timelines' WAL" in res.stdout, res.stdout
    assert all(archived(live, s) for s in unarchived), unarchived
    assert (live.repository / "bk.wal-timeline").read_text().strip() == "2"


def test_destroy_keeps_the_repository_and_a_new_cluster_continues_it(live: Live) -> None:
    res = cli("destroy", *live.args(), "--yes", timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"backups kept in {live.repository}" in res.stdout
    assert (live.repository / "backup" / "bk" / "backup.info").is_file()
    assert any((live.repository / "backup" / "bk").glob("*F"))
    assert (live.repository / "bk.destroyed-cluster.json").is_file()
    # A new cluster of the same name (another database) continues the stanza: archiving
    # works (apply converges only then), the former backups are not listed as its own.
    res = cli("apply", *live.args(), "--timeout", "240", timeout=360)
    assert res.returncode == 0, f"apply failed:\n{res.stdout}\n{res.stderr}"
    assert "stanza-upgrade" in res.stdout
    assert not (live.repository / "bk.destroyed-cluster.json").exists()
    info = live.backups()
    assert info["backups"] == [] and info["walMax"], info
    assert any((live.repository / "backup" / "bk").glob("*F"))  # the former ones stay


# --- replicas from the repository (after the test above: a new database continuing the
# stanza, whose former backups belong to another database) -----------------------------------


def scale_to(live: Live, instances: int) -> str:
    write_manifest(live.root, "bk", f"{NET}.0/24", body(live.repository, instances))
    res = cli("apply", *live.args(), "--timeout", "240", timeout=360)
    assert res.returncode == 0, f"apply failed:\n{res.stdout}\n{res.stderr}"
    return res.stdout


def patroni_log(live: Live, node: str) -> str:
    return (live.state / "machines" / node / "var" / "log" / "pgha" / "patroni.log").read_text()


def backup_label(live: Live, node: str) -> str:
    """The label of the backup the node's data directory was made from (PostgreSQL renames
    backup_label once recovery started)."""
    return (live.state / "machines" / node / "pg" / "data" / "backup_label.old").read_text()


def streaming(live: Live, node: str) -> bool:
    rows = live.superuser("SELECT status FROM pg_stat_wal_receiver", node)
    return rows == [("streaming",)]


def test_a_new_replica_is_restored_from_the_repository(live: Live) -> None:
    res = cli("backup", *live.args(), "--type", "full", timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    live.superuser("CREATE TABLE after_backup AS SELECT 42 AS x")  # WAL after the backup
    scale_to(live, 3)
    log = patroni_log(live, "node3")
    assert "replica has been created using pgbackrest" in log, log[-3000:]
    assert "LABEL: pgBackRest backup" in backup_label(live, "node3")
    wait_for("node3 streaming", lambda: streaming(live, "node3"), 60)
    assert live.superuser("SELECT x FROM after_backup", "node3") == [(42,)]


def test_a_replica_comes_up_by_basebackup_when_the_repository_is_unreadable(live: Live) -> None:
    # The backups unreadable to PostgreSQL's user (its archive stays writable, so archiving
    # and apply's convergence are untouched): the restore fails, pg_basebackup follows.
    backups = live.repository / "backup" / "bk"
    mode = backups.stat().st_mode & 0o777
    backups.chmod(0)
    try:
        scale_to(live, 4)
    finally:
        backups.chmod(mode)
    log = patroni_log(live, "node4")
    assert "Error creating replica using method pgbackrest" in log, log[-3000:]
    assert "replica has been created using basebackup" in log, log[-3000:]
    assert "LABEL: pg_basebackup base backup" in backup_label(live, "node4")
    wait_for("node4 streaming", lambda: streaming(live, "node4"), 60)
