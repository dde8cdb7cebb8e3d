"""spec.backup added to a running cluster (local provider, one etcd member, two nodes):
archive_mode takes a restart, which the operator rolls (replica, switchover, old primary),
then creates and checks the stanza; `apply` converges only once WAL is archived."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.cluster_helpers import (
    cli,
    kill_leftovers,
    make_state_root,
    query,
    write_manifest,
)

pytestmark = pytest.mark.integration

NET = "127.0.75"  # etcd1 .101, node1-2 .11-.12, haproxy1 .201
BODY = "  etcd: {members: 1}\n  postgres: {instances: 2}\n  loadBalancer: {instances: 1}\n"


@pytest.fixture
def root() -> Iterator[Path]:
    root = make_state_root()
    try:
        yield root
    finally:
        args = ["-f", str(root / "manifests" / "bkon.yaml"), "--state-dir", str(root / "state")]
        cli("destroy", *args, "--yes", "--delete-backups", timeout=180)
        kill_leftovers(root / "state")
        shutil.rmtree(root, ignore_errors=True)


def test_backups_turned_on_for_a_running_cluster(root: Path) -> None:
    manifest = write_manifest(root, "bkon", f"{NET}.0/24", BODY)
    args = ["-f", str(manifest), "--state-dir", str(root / "state")]
    res = cli("apply", *args, "--timeout", "240", timeout=360)
    assert res.returncode == 0, f"apply failed:\n{res.stdout}\n{res.stderr}"
    repository = root / "backups"
    write_manifest(
        root, "bkon", f"{NET}.0/24", BODY + f"  backup: {{repository: {{path: {repository}}}}}\n"
    )
    res = cli("apply", *args, "--timeout", "300", timeout=420)
    assert res.returncode == 0, f"apply failed:\n{res.stdout}\n{res.stderr}"
    assert "restart" in res.stdout and "create the backup stanza" in res.stdout, res.stdout
    for node in ("node1", "node2"):
        conninfo = cli("dsn", *args, "--user", "postgres", "--node", node, check=True).stdout
        assert query(conninfo.strip(), "SHOW archive_mode") == [("on",)], node
    assert (repository / "backup" / "bkon" / "backup.info").is_file()
