"""Backup figures: seconds and MB/s of a full pgBackRest backup, of a restore of it into a
scratch directory, and of pg_basebackup of the same data as the reference, on a data set
`pgbench -i` generates (scale 50, about 750 MB, by default). JSON. Never in `make test`.

    .venv/bin/python bench/backup.py [--scale 10]

A one-node cluster (local provider) with `spec.backup` (the defaults: zst compression).
The backup is `pgha-operator backup --type full` as a user runs it (its seconds include
the command's own start and checks; pgBackRest's own duration is beside it); the restore
and pg_basebackup run as PostgreSQL's user on the same host. MB/s is the data's size (the
size pgBackRest reports for the backup) over the seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from psycopg.conninfo import make_conninfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pgha_operator.core.render.pgbackrest import PGBACKREST  # noqa: E402
from tests.integration.cluster_helpers import (  # noqa: E402
    cli,
    kill_leftovers,
    make_state_root,
    write_manifest,
)

NET = "127.0.77.0/24"
NAME = "benchbackup"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
MIB = 1024 * 1024


def body(repository: Path) -> str:
    return (
        "  etcd: {members: 1}\n"
        "  postgres: {instances: 1}\n"
        "  loadBalancer: {instances: 1}\n"
        f"  backup: {{repository: {{path: {repository}}}}}\n"
    )


def as_postgres(*argv: str, env: dict[str, str] | None = None) -> float:
    """Run argv as PostgreSQL's user (runuser keeps the environment); its seconds."""
    start = time.monotonic()
    run(["runuser", "-u", "postgres", "--", *argv], env={**os.environ, **(env or {})})
    return time.monotonic() - start


def run(argv: list[str], env: dict[str, str] | None = None) -> None:
    res = subprocess.run(argv, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise SystemExit(f"{argv[0]} ... exited {res.returncode}:\n{res.stdout}\n{res.stderr}")


def scratch(root: Path, name: str) -> Path:
    path = root / name
    path.mkdir(mode=0o700)
    shutil.chown(path, "postgres", "postgres")
    return path


def figure(seconds: float, size: int) -> dict[str, float]:
    return {"seconds": round(seconds, 2), "MBps": round(size / MIB / seconds, 1)}


def measure(root: Path, args: list[str], scale: int) -> dict[str, Any]:
    node = root / "state" / "machines" / "node1"
    config = node / "etc" / "patroni" / "pgbackrest.conf"
    dsn = cli("dsn", *args, "--user", "postgres", "--node", "node1", check=True).stdout
    start = time.monotonic()
    run([str(PG_BIN / "pgbench"), "-i", "-q", "-s", str(scale), dsn.strip()])
    generate = time.monotonic() - start

    start = time.monotonic()
    cli("backup", *args, "--type", "full", timeout=3600, check=True)
    backup_seconds = time.monotonic() - start
    info = json.loads(cli("backups", *args, "--json", check=True).stdout)
    [full] = [b for b in info["backups"] if b["type"] == "full"]
    size = int(full["size"])

    restore_seconds = as_postgres(
        PGBACKREST,
        f"--config={config}",
        f"--stanza={NAME}",
        f"--pg1-path={scratch(root, 'restored')}",
        "restore",
    )
    conninfo, password = replication_login(node)
    basebackup_seconds = as_postgres(
        str(PG_BIN / "pg_basebackup"),
        f"--pgdata={scratch(root, 'basebackup')}",
        f"--dbname={conninfo}",
        "--wal-method=stream",
        "--checkpoint=fast",
        env={"PGPASSWORD": password},
    )
    return {
        "benchmark": "backup",
        "pgbenchScale": scale,
        "dataMiB": round(size / MIB, 1),
        "generateSeconds": round(generate, 1),
        "compression": "zst",
        "repositoryMiB": round(int(full["repositorySize"]) / MIB, 1),
        "fullBackup": {
            **figure(backup_seconds, size),
            "pgbackrestSeconds": full["stop"] - full["start"],
        },
        "restore": figure(restore_seconds, size),
        "pgBasebackup": figure(basebackup_seconds, size),
    }


def replication_login(node: Path) -> tuple[str, str]:
    """What Patroni's pg_basebackup on a new node uses: the replication user over TLS to the
    node's address (pg_hba has no local replication line), from node1's patroni.yml."""
    pg = yaml.safe_load((node / "etc" / "patroni" / "patroni.yml").read_text())["postgresql"]
    host, port = pg["listen"].rsplit(":", 1)
    login = pg["authentication"]["replication"]
    conninfo = make_conninfo(
        host=host,
        port=port,
        user=login["username"],
        sslmode=login["sslmode"],
        sslrootcert=login["sslrootcert"],
    )
    return conninfo, login["password"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=50, help="pgbench -i -s (default 50)")
    scale = parser.parse_args().scale
    root = make_state_root()
    repository = root / "repository"
    manifest = write_manifest(root, NAME, NET, body(repository))
    args = ["-f", str(manifest), "--state-dir", str(root / "state")]
    try:
        cli("apply", *args, "--timeout", "240", timeout=360, check=True)
        print(json.dumps(measure(root, args, scale), indent=2))
    finally:
        cli("destroy", *args, "--yes", "--delete-backups", timeout=180)
        kill_leftovers(root / "state")
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
