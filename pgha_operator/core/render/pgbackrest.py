"""pgBackRest's configuration on each PostgreSQL node, and the archiving settings Patroni
gives PostgreSQL (spec.backup; nothing here when it is absent).

Each node's pgbackrest.conf lives beside its patroni.yml. Its stanza (named after the
cluster) lists the node itself first as pg1 (archive-push and archive-get use pg1) and the
other nodes after it, so a backup started on any node finds the primary and, with
`--backup-standby`, copies the files from a replica. On the `local` provider every node's
data directory is on this host, so pgBackRest reads them all without SSH; the repository
is a directory of this host too.

pgBackRest logs in over each node's Unix socket as the superuser (pg_hba: `local all all
scram-sha-256`); libpq finds the password in the node's pgbackrest.pgpass, which the
operator names in PGPASSFILE when it runs pgBackRest (archive-push and archive-get, run by
PostgreSQL, never log in).
"""

from __future__ import annotations

import posixpath
import shlex
from dataclasses import dataclass
from typing import Any

from pgha_operator.core.facts.backup import destroyed_marker
from pgha_operator.core.render.context import SUPERUSER, DesiredFile, RenderContext
from pgha_operator.core.spec.backup import BackupSpec, repository_path
from pgha_operator.core.topology import Layout

PGBACKREST = "/usr/bin/pgbackrest"
CONFIG_NAME = "pgbackrest.conf"
PASSFILE_NAME = "pgbackrest.pgpass"

# WAL archiving: `on`, not `always`. `always` would have replicas archive every segment they
# receive, so a segment the old primary had not archived when it died would still reach the
# repository; but pgBackRest 2.45 refuses it (`check` and `backup` stop with "[067]:
# archive_mode=always not supported", measured). With `on`, a promoted replica archives what
# it writes from its promotion on, plus the old timeline's last partial segment; the
# complete segments the old primary had not archived yet are still in the new primary's
# pg_wal (wal_keep_size) and are pushed from there (docs/backup.md, "Across a failover").
ARCHIVE_MODE = "on"


@dataclass(frozen=True)
class BackupPaths:
    """Where one node's pgBackRest files are (all beside patroni.yml but the lock dir)."""

    config: str
    passfile: str
    lock_dir: str  # in the PostgreSQL user's own directory (pgBackRest creates it)


def backup_paths(layout: Layout) -> BackupPaths:
    config_dir = posixpath.dirname(layout.patroni_config)
    pg_home = posixpath.dirname(layout.pg_data.rstrip("/"))
    return BackupPaths(
        config=posixpath.join(config_dir, CONFIG_NAME),
        passfile=posixpath.join(config_dir, PASSFILE_NAME),
        lock_dir=posixpath.join(pg_home, "pgbackrest-lock"),
    )


def stanza(ctx: RenderContext) -> str:
    return ctx.topology.cluster


def pgbackrest_argv(ctx: RenderContext, machine: str, *command: str) -> list[str]:
    """`pgbackrest --config=<node's> --stanza=<cluster> COMMAND...`."""
    config = backup_paths(ctx.layout(machine)).config
    return [PGBACKREST, f"--config={config}", f"--stanza={stanza(ctx)}", *command]


def archive_parameters(ctx: RenderContext, machine: str) -> dict[str, str]:
    """archive_mode and archive_command for one node (patroni.yml's local parameters: the
    config path is the machine's own); empty without spec.backup."""
    if ctx.cluster.spec.backup is None:
        return {}
    push = shlex.join(pgbackrest_argv(ctx, machine, "archive-push"))
    return {"archive_mode": ARCHIVE_MODE, "archive_command": f'{push} "%p"'}


def recovery_settings(ctx: RenderContext, machine: str) -> dict[str, str]:
    """Patroni's recovery_conf: replicas (and a recovering primary) fetch WAL they miss from
    the repository when streaming cannot give it."""
    if ctx.cluster.spec.backup is None:
        return {}
    get = shlex.join(pgbackrest_argv(ctx, machine, "archive-get"))
    return {"restore_command": f'{get} %f "%p"'}


# Patroni's name for the replica-creation method below (postgresql.create_replica_methods).
REPLICA_METHOD = "pgbackrest"


def replica_creation(ctx: RenderContext, machine: str) -> dict[str, Any]:
    """Patroni's replica creation with spec.backup: a new or reinitialised replica restores
    the repository's latest backup first (its WAL then comes from the archive and from
    streaming), so the primary is not read whole; pg_basebackup from the primary when the
    restore fails (no backup yet, repository unreachable). Empty without spec.backup.

    `no_params`: pgBackRest takes none of the --scope/--datadir/... arguments Patroni would
    add (the node's pgbackrest.conf names its data directory). `keep_data`: Patroni leaves
    the data directory in place before the restore (`--delta` reuses what matches); with
    no_params Patroni drops that option before the command runs, so a failed restore's
    leftovers are removed and pg_basebackup starts from an empty directory (Patroni 4.1's
    bootstrap.create_replica, read)."""
    backup = ctx.cluster.spec.backup
    if backup is None:
        return {}
    return {
        "create_replica_methods": [REPLICA_METHOD, "basebackup"],
        REPLICA_METHOD: {
            "command": shlex.join(["/bin/sh", "-c", restore_script(ctx, machine, backup)]),
            "keep_data": True,
            "no_params": True,
        },
    }


def restore_script(ctx: RenderContext, machine: str, backup: BackupSpec) -> str:
    """`pgbackrest --delta restore`, unless the stanza is still a destroyed cluster's: while
    `destroy`'s marker is there (until the operator's stanza-upgrade), the stanza's current
    database is the former one and pgBackRest would restore its latest backup, another
    database whose node Patroni then refuses (system ID mismatch) again and again. After
    the upgrade pgBackRest itself refuses a former database's backup ([075], measured)."""
    marker = destroyed_marker(repository_path(backup, ctx.topology.cluster), stanza(ctx))
    restore = shlex.join(pgbackrest_argv(ctx, machine, "--delta", "restore"))
    refusal = shlex.quote(f"{marker} exists: the stanza is a destroyed cluster's; no restore")
    return f"if [ -e {shlex.quote(marker)} ]; then echo {refusal} >&2; exit 1; fi; exec {restore}"


def pgbackrest_conf(ctx: RenderContext, machine: str, backup: BackupSpec) -> str:
    topo = ctx.topology
    paths = backup_paths(ctx.layout(machine))
    lines = [
        f"# pgBackRest on {machine} of cluster {topo.cluster}; written by pgha-operator.",
        "[global]",
        f"repo1-path={repository_path(backup, topo.cluster)}",
        f"repo1-retention-full={backup.retention.full}",
        f"compress-type={backup.compression}",
        f"lock-path={paths.lock_dir}",
        # Logs go to the caller (PostgreSQL's log for archiving, the operator for the rest).
        "log-level-file=off",
        "log-level-console=warn",
        "log-level-stderr=warn",
        # A backup starts at once (an immediate checkpoint), not at the next timed one.
        "start-fast=y",
        "",
        f"[{stanza(ctx)}]",
    ]
    nodes = [machine, *(n for n in topo.postgres if n != machine)]
    for index, node in enumerate(nodes, start=1):
        layout = ctx.layout(node)
        lines += [
            f"pg{index}-path={layout.pg_data}",
            f"pg{index}-socket-path={layout.pg_socket_dir}",
            f"pg{index}-port={topo.pg_port}",
            f"pg{index}-user={SUPERUSER}",
        ]
    return "\n".join(lines) + "\n"


def _pgpass_field(value: str) -> str:
    r"""pgpass escapes `\` and `:` (core/passfile.py's rule; importing it here would loop)."""
    return value.replace("\\", "\\\\").replace(":", "\\:")


def pgbackrest_passfile(ctx: RenderContext) -> str:
    """The superuser's password for any socket connection pgBackRest makes."""
    password = _pgpass_field(ctx.secrets.superuser_password)
    return f"*:*:*:{_pgpass_field(SUPERUSER)}:{password}\n"


PGBACKREST_CONFIG_MODE = 0o640  # read by PostgreSQL's user (archive-push), no secret in it
PASSFILE_MODE = 0o600  # libpq refuses a passfile others can read


def backup_files(ctx: RenderContext, machine: str) -> list[DesiredFile]:
    """A node's pgbackrest.conf and passfile (none without spec.backup). No service reads
    them: pgBackRest reads its configuration on every run, so a change needs no reload."""
    backup = ctx.cluster.spec.backup
    if backup is None:
        return []
    paths = backup_paths(ctx.layout(machine))
    return [
        DesiredFile(
            machine=machine,
            path=paths.config,
            content=pgbackrest_conf(ctx, machine, backup),
            mode=PGBACKREST_CONFIG_MODE,
            owner=ctx.service_user,
            service=None,
        ),
        DesiredFile(
            machine=machine,
            path=paths.passfile,
            content=pgbackrest_passfile(ctx),
            mode=PASSFILE_MODE,
            owner=ctx.service_user,
            service=None,
        ),
    ]
