"""On-demand backups and the backup list (`pgha-operator backup`, `backups`), and the
repository's fate on `destroy`.

A backup runs under `<state>/backup.lock` (never two at once, whoever starts them) and,
when a replica is healthy, copies the files from it (`--backup-standby`): the primary only
starts and stops the backup. pgBackRest is run on the primary's machine with that node's
configuration (core/render/pgbackrest.py lists every node in it).
"""

from __future__ import annotations

import posixpath
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pgha_operator.core.errors import OperatorError, PermanentError
from pgha_operator.core.facts.backup import (
    StanzaInfo,
    destroyed_marker,
    destroyed_marker_text,
    timeline_marker,
)
from pgha_operator.core.facts.observed import Observed
from pgha_operator.core.spec import Cluster
from pgha_operator.core.spec.backup import BackupSpec, repository_path
from pgha_operator.shell.clients.pgbackrest import BackupType, PgBackRest
from pgha_operator.shell.hosts.base import HostError
from pgha_operator.shell.state import LockHeld
from pgha_operator.shell.state.lock import FileLock

if TYPE_CHECKING:
    from pgha_operator.shell.controller import Controller

BACKUP_LOCK = "backup.lock"
# A replica this far behind (bytes of WAL) is not a backup source: its copy would need
# that much WAL replayed at restore, and it may be failing.
MAX_STANDBY_LAG = 16 * 1024 * 1024


@dataclass(frozen=True)
class BackupTaken:
    kind: BackupType
    standby: str | None  # the replica the files came from; None: the primary
    seconds: float
    info: StanzaInfo


def backup_spec(cluster: Cluster) -> BackupSpec:
    if cluster.spec.backup is None:
        raise PermanentError(
            f"cluster {cluster.name} has no spec.backup: add `backup: {{}}` to its manifest "
            "(docs/backup.md) and apply it"
        )
    return cluster.spec.backup


def healthy_standby(observed: Observed, nodes: tuple[str, ...]) -> str | None:
    """A streaming replica of the manifest, least lag first; None when none is."""
    replicas = [
        m
        for m in observed.patroni.members
        if m.name in nodes
        and m.role in ("replica", "sync_standby", "quorum_standby")
        and m.state == "streaming"
        and (m.lag_bytes or 0) <= MAX_STANDBY_LAG
    ]
    replicas.sort(key=lambda m: (m.lag_bytes or 0, m.name))
    return replicas[0].name if replicas else None


def take_backup(ctl: Controller, kind: BackupType) -> BackupTaken:
    """A backup now (the `backup` command): the source from a fresh observation."""
    backup_spec(ctl.cluster)
    desired, observed = ctl.observe(secrets=ctl.secrets())
    leader, standby = backup_source(observed, desired.topology.postgres)
    return run_backup(ctl, kind, leader, standby, f"backup --type {kind}")


def backup_source(observed: Observed, nodes: tuple[str, ...]) -> tuple[str, str | None]:
    """The primary pgBackRest runs beside, and the replica it copies from (None: none)."""
    leader = observed.patroni.leader
    if leader is None or leader.state != "running":
        raise OperatorError("the cluster has no running primary to back up")
    return leader.name, healthy_standby(observed, nodes)


def run_backup(
    ctl: Controller, kind: BackupType, leader: str, standby: str | None, who: str
) -> BackupTaken:
    """Under backup.lock: a second backup, whoever starts it, is refused."""
    lock = FileLock(ctl.state_dir / BACKUP_LOCK)
    try:
        lock.acquire(who)
    except LockHeld as exc:
        raise PermanentError(f"a backup is already running ({exc.holder}); wait for it") from None
    try:
        client = _client(ctl, leader)
        started = time.monotonic()
        client.backup(kind, from_standby=standby is not None)
        return BackupTaken(kind, standby, time.monotonic() - started, client.info())
    finally:
        lock.release()


def list_backups(ctl: Controller) -> StanzaInfo:
    backup_spec(ctl.cluster)
    _, observed = ctl.observe(secrets=ctl.secrets())
    up = [n for n in ctl.topology.postgres if observed.has_machine(n)]
    if not up:
        raise OperatorError(f"no machine of cluster {ctl.cluster.name} is up to read backups")
    leader = observed.patroni.leader
    return _client(ctl, leader.name if leader else up[0]).info()


def _client(ctl: Controller, machine: str) -> PgBackRest:
    host = ctl.provider.host(machine)
    return PgBackRest(host, ctl.layouts[machine], ctl.cluster.name, ctl.user)


def kept_backups(cluster: Cluster) -> str | None:
    """Where a destroyed cluster's backups remain (None: it had none)."""
    if cluster.spec.backup is None:
        return None
    return repository_path(cluster.spec.backup, cluster.name)


def mark_destroyed(ctl: Controller) -> str | None:
    """Before `destroy` (backups kept): beside the cluster's stanza, a marker naming its
    database, so that a new cluster of the same name continues the stanza instead of
    finding another database's there (core/plan/backup.py). Only when the stanza is this
    running cluster's own; the marker's path, or None."""
    backup = ctl.cluster.spec.backup
    if backup is None:
        return None
    try:
        _, observed = ctl.observe(secrets=ctl.secrets())
        facts = observed.backup
        if facts is None or facts.system_id is None or facts.stanza_system_id != facts.system_id:
            return None
        node = next(n for n in ctl.topology.postgres if observed.has_machine(n))
        marker = destroyed_marker(repository_path(backup, ctl.cluster.name), ctl.cluster.name)
        text = destroyed_marker_text(ctl.cluster.name, facts.system_id)
        ctl.provider.host(node).write(marker, text.encode(), mode=0o644)
        return marker
    except (OperatorError, HostError, OSError, StopIteration):
        return None  # destroy goes on; a new cluster of this name then says ForeignStanza


def delete_backups(cluster: Cluster) -> list[str]:
    """The cluster's stanza (its backups and WAL) removed from a repository on this host;
    the repository directory goes too once nothing else is in it. Returns what was removed."""
    repository = kept_backups(cluster)
    if repository is None:
        return []
    removed = []
    for kind in ("backup", "archive"):
        stanza_dir = Path(posixpath.join(repository, kind, cluster.name))
        if stanza_dir.exists():
            shutil.rmtree(stanza_dir)
            removed.append(str(stanza_dir))
    Path(destroyed_marker(repository, cluster.name)).unlink(missing_ok=True)
    Path(timeline_marker(repository, cluster.name)).unlink(missing_ok=True)
    for folder in (Path(repository) / "backup", Path(repository) / "archive", Path(repository)):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return removed
