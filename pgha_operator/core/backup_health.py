"""The `BackupsHealthy` condition's verdict (spec.backup): is WAL reaching the repository?

PURE. False while the stanza is not made yet (transient: the plan makes it), when the
repository holds another database's stanza, and when the primary's archiver failed last:
PostgreSQL keeps every WAL segment it could not archive, so a failing archive fills
pg_wal and, in the end, the disk; the reason says so long before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pgha_operator.core.facts.backup import format_size
from pgha_operator.core.facts.observed import Observed
from pgha_operator.core.spec.backup import repository_path
from pgha_operator.core.spec.models import Cluster


@dataclass(frozen=True)
class BackupVerdict:
    healthy: bool
    reason: str
    transient: bool = False


def _ago(then: float | None, now: float) -> str:
    if then is None:
        return "never"
    seconds = max(0, int(now - then))
    return f"{seconds}s ago" if seconds < 120 else f"{seconds // 60} min ago"


def backup_verdict(cluster: Cluster, observed: Observed) -> BackupVerdict | None:
    """None: no spec.backup, no condition."""
    backup = cluster.spec.backup
    if backup is None:
        return None
    facts = observed.backup
    repository = repository_path(backup, cluster.name)
    if facts is None:
        return BackupVerdict(False, "no PostgreSQL node is up to look at the backups", True)
    if facts.adoptable:
        return BackupVerdict(
            False, f"AdoptingStanza: continuing the stanza a destroyed {cluster.name} left", True
        )
    if facts.foreign_stanza:
        return BackupVerdict(
            False,
            f"ForeignStanza: {repository} holds stanza {cluster.name} of another database "
            f"(system id {facts.stanza_system_id}; this cluster's is {facts.system_id}), "
            "kept from a cluster of the same name destroyed with its backups: move "
            f"{repository}/backup/{cluster.name} and archive/{cluster.name} away, or set "
            "spec.backup.repository.path; WAL is not archived until then",
        )
    if not facts.stanza_exists:
        return BackupVerdict(
            False, f"StanzaMissing: the stanza is not created in {repository}", True
        )
    archiver = facts.archiver
    if archiver is None:
        return BackupVerdict(False, "no primary answers to read pg_stat_archiver", True)
    now = observed.now
    if archiver.failing:
        return BackupVerdict(
            False,
            f"ArchivingFailing: WAL {archiver.last_failed_wal} failed to reach {repository} "
            f"{_ago(archiver.last_failed_time, now)} ({archiver.failed_count} failures; last "
            f"archived {archiver.last_archived_wal or 'none'}, "
            f"{_ago(archiver.last_archived_time, now)}); PostgreSQL keeps the WAL it cannot "
            "archive in pg_wal until the disk fills: see the primary's PostgreSQL log",
        )
    return BackupVerdict(
        True,
        f"ok: last archived {archiver.last_archived_wal or 'none'} "
        f"{_ago(archiver.last_archived_time, now)}",
    )


def backup_status(cluster: Cluster, observed: Observed) -> dict[str, Any] | None:
    """The `backup` section of the status document; None without spec.backup."""
    backup = cluster.spec.backup
    if backup is None:
        return None
    facts = observed.backup
    out: dict[str, Any] = {
        "repository": repository_path(backup, cluster.name),
        "stanza": cluster.name if facts and facts.stanza_exists else None,
        "lastBackup": None,
        "archiver": None,
    }
    if facts is None:
        return out
    last = facts.last_backup
    if last is not None:
        out["lastBackup"] = {**last.as_json(), "ageSeconds": max(0, int(observed.now - last.stop))}
    archiver = facts.archiver
    if archiver is not None:
        out["archiver"] = {
            "archivedCount": archiver.archived_count,
            "lastArchivedWal": archiver.last_archived_wal,
            "lastArchivedAgeSeconds": _age(archiver.last_archived_time, observed.now),
            "failedCount": archiver.failed_count,
            "lastFailedWal": archiver.last_failed_wal,
            "lastFailedAgeSeconds": _age(archiver.last_failed_time, observed.now),
            "failing": archiver.failing,
        }
    return out


def _age(then: float | None, now: float) -> int | None:
    return None if then is None else max(0, int(now - then))


def format_backup_status(section: dict[str, Any]) -> list[str]:
    """The status table's lines for the `backup` section."""
    lines = [f"backups: repository {section['repository']}"]
    last = section.get("lastBackup")
    if last:
        lines.append(
            f"  last backup {last['label']} ({last['type']}), {last['ageSeconds']}s ago, "
            f"{format_size(last['size'])}"
        )
    else:
        lines.append("  no backup yet")
    archiver = section.get("archiver")
    if archiver:
        state = "FAILING" if archiver["failing"] else "ok"
        age = archiver["lastArchivedAgeSeconds"]
        lines.append(
            f"  WAL archiving {state}: last archived {archiver['lastArchivedWal'] or 'none'}"
            + (f" {age}s ago" if age is not None else "")
            + f", {archiver['failedCount']} failures"
        )
    return lines
