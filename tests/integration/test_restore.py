"""Restores with real pgBackRest on one-node clusters (local provider): a new cluster built
from another's backup to a point in time (spec.bootstrap.recovery), row-exact, on its own
timeline and stanza, the source's stanza untouched, its roles given its own passwords.

One source cluster for the module (rows written, a time T noted between two batches)."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.cluster_helpers import (
    ClusterFiles,
    cli,
    destroy_cluster,
    make_state_root,
    query,
    wait_for,
    write_manifest,
)

pytestmark = pytest.mark.integration

SOURCE_NET = "127.0.86"
CLONE_NET = "127.0.87"
LEAN = "  etcd: {members: 1}\n  postgres: {instances: 1}\n  loadBalancer: {instances: 1}\n"
BEFORE, AFTER = range(1, 41), range(41, 81)  # ids committed before T, after T


@dataclass
class Source(ClusterFiles):
    repository: Path
    target: str = ""  # T, as PostgreSQL printed it

    def superuser(self, sql: str) -> list[tuple]:
        return query(superuser_dsn(self), sql)


def superuser_dsn(cluster: ClusterFiles, user: str = "postgres") -> str:
    res = cli("dsn", *cluster.args(), "--user", user, "--node", "node1", check=True)
    return res.stdout.strip() + " connect_timeout=3"


def archived_up_to_now(source: Source) -> None:
    """The segment holding everything written so far is in the repository."""
    [(segment,)] = source.superuser("SELECT pg_walfile_name(pg_switch_wal())")
    wait_for(
        f"{segment} archived",
        lambda: source.superuser("SELECT last_archived_wal FROM pg_stat_archiver")[0][0] >= segment,
        60,
    )


@pytest.fixture(scope="module")
def source() -> Iterator[Source]:
    root = make_state_root()
    repository = root / "src-backups"
    body = LEAN + f"  backup: {{repository: {{path: {repository}}}}}\n"
    c = Source(
        root, write_manifest(root, "src", f"{SOURCE_NET}.0/24", body), root / "state", repository
    )
    try:
        res = cli("apply", *c.args(), "--timeout", "240", timeout=360)
        assert res.returncode == 0, f"apply failed:\n{res.stdout}\n{res.stderr}"
        cli("backup", *c.args(), "--type", "full", check=True, timeout=300)
        c.superuser("CREATE TABLE t (id int PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())")
        for i in BEFORE:  # each its own transaction, acknowledged
            c.superuser(f"INSERT INTO t (id) VALUES ({i})")
        time.sleep(1.0)
        c.target = c.superuser("SELECT clock_timestamp()::text")[0][0]
        time.sleep(1.0)
        for i in AFTER:
            c.superuser(f"INSERT INTO t (id) VALUES ({i})")
        archived_up_to_now(c)
        yield c
    finally:
        if c.state.exists():
            cli("destroy", *c.args(), "--yes", "--delete-backups", timeout=180)
        destroy_cluster(c.manifest, c.state)
        shutil.rmtree(root, ignore_errors=True)


def stanza_files(repository: Path, stanza: str) -> dict[str, str]:
    """Every file of a stanza (relative path -> sha256)."""
    found = {}
    for kind in ("backup", "archive"):
        for path in sorted((repository / kind / stanza).rglob("*")):
            if path.is_file():
                found[str(path.relative_to(repository))] = hashlib.sha256(
                    path.read_bytes()
                ).hexdigest()
    return found


def test_a_clone_to_a_time_is_row_exact_on_its_own_stanza(source: Source) -> None:
    before = stanza_files(source.repository, "src")
    root = make_state_root()
    clone_repository = root / "clone-backups"
    body = LEAN + (
        f"  backup: {{repository: {{path: {clone_repository}}}}}\n"
        "  bootstrap:\n"
        f"    recovery: {{source: {source.repository}, stanza: src, "
        f"targetTime: '{source.target}'}}\n"
    )
    clone = ClusterFiles(
        root, write_manifest(root, "clone", f"{CLONE_NET}.0/24", body), root / "state"
    )
    try:
        res = cli("apply", *clone.args(), "--timeout", "300", timeout=420)
        assert res.returncode == 0, f"apply failed:\n{res.stdout}\n{res.stderr}"
        conninfo = superuser_dsn(clone)  # this cluster's superuser password works
        ids = [row[0] for row in query(conninfo, "SELECT id FROM t ORDER BY id")]
        assert ids == list(BEFORE), f"target {source.target}: {ids}"
        # A new timeline, accepting writes, archived into the clone's own stanza.
        [(timeline,)] = query(conninfo, "SELECT timeline_id FROM pg_control_checkpoint()")
        assert timeline >= 2
        query(conninfo, "INSERT INTO t (id) VALUES (1000)")
        assert (clone_repository / "backup" / "clone" / "backup.info").is_file()
        own = stanza_files(clone_repository, "clone")
        assert any(name.endswith(f"{timeline:08X}.history") for name in own), own
        # The roles the operator logs in as carry the clone's passwords, not the source's.
        assert query(superuser_dsn(clone, "app"), "SELECT current_user") == [("app",)]
        assert query(superuser_dsn(clone, "admin"), "SELECT current_user") == [("admin",)]
        # The source's stanza: every file as it was, none of the clone's timeline added.
        after = stanza_files(source.repository, "src")
        assert {k: v for k, v in after.items() if k in before} == before
        added = [name for name in after if name not in before]
        assert not [n for n in added if f"/{timeline:08X}" in n or "history" in n], added
        # The clone's status: converged (its stanza made and checked).
        shown = json.loads(cli("status", *clone.args(), "--json", timeout=60).stdout)
        assert shown["phase"] == "Converged", shown["conditions"]
    finally:
        cli("destroy", *clone.args(), "--yes", "--delete-backups", timeout=180)
        destroy_cluster(clone.manifest, clone.state)
        shutil.rmtree(root, ignore_errors=True)


def test_in_place_restore_to_a_time_is_row_exact_with_the_current_passwords(
    source: Source,
) -> None:
    """Last in the module: it rewinds the shared source."""
    # The app role's password changes after T: the restored pg_authid has the old one.
    cli("rotate", "passwords", *source.args(), "--role", "app", check=True, timeout=240)
    [(old_timeline,)] = source.superuser("SELECT timeline_id FROM pg_control_checkpoint()")
    shown = cli("restore", *source.args(), "--to-time", source.target, check=True, timeout=60)
    assert "is lost" in shown.stdout and "Nothing was done" in shown.stdout, shown.stdout
    assert source.superuser("SELECT count(*) FROM t") == [(len(BEFORE) + len(AFTER),)]
    res = cli("restore", *source.args(), "--to-time", source.target, "--yes", timeout=900)
    assert res.returncode == 0, f"restore failed:\n{res.stdout}\n{res.stderr}"
    ids = [row[0] for row in source.superuser("SELECT id FROM t ORDER BY id")]
    assert ids == list(BEFORE), f"target {source.target}: {ids}"
    [(timeline,)] = source.superuser("SELECT timeline_id FROM pg_control_checkpoint()")
    assert timeline > old_timeline
    assert query(superuser_dsn(source, "app"), "SELECT current_user") == [("app",)]
    # A full backup on the new timeline; writes archived again.
    backups = json.loads(cli("backups", *source.args(), "--json", check=True).stdout)
    assert backups["backups"][-1]["walStart"].startswith(f"{timeline:08X}"), backups
    source.superuser("INSERT INTO t (id) VALUES (2000)")
    archived_up_to_now(source)
    shown_status = json.loads(cli("status", *source.args(), "--json", timeout=60).stdout)
    assert shown_status["phase"] == "Converged", shown_status["conditions"]
