"""Before a cluster is built from another's backup: is the source there, with a backup
that can reach the target? (spec.bootstrap.recovery; reads the source's backup.info.)

Checked for a cluster not created yet only (`validate`, and `apply`/`run` before the first
apply): once a clone runs, its source may go away without harm.
"""

from __future__ import annotations

import posixpath
from datetime import UTC, datetime
from pathlib import Path

from pgha_operator.core.facts.backup import BackupInfoFile, parse_backup_info
from pgha_operator.core.spec import LoadedCluster
from pgha_operator.core.spec.problems import ManifestError, Problem
from pgha_operator.core.spec.recovery import RecoverySpec, source_repository, source_stanza
from pgha_operator.shell.providers.local import default_state_dir
from pgha_operator.shell.state import StateDir, StateError

FIELD = "spec.bootstrap.recovery.source"


def backup_info_path(recovery: RecoverySpec) -> str:
    return posixpath.join(
        source_repository(recovery), "backup", source_stanza(recovery), "backup.info"
    )


def source_reason(recovery: RecoverySpec, info: BackupInfoFile | None) -> str | None:
    """Why the source cannot serve this restore (None: it can), from its backup.info
    (None: there is none)."""
    repository, stanza = source_repository(recovery), source_stanza(recovery)
    if info is None or info.system_id is None:
        return (
            f"unknown source {recovery.source!r}: {repository} holds no pgBackRest stanza "
            f"{stanza} (no readable backup/{stanza}/backup.info); name a cluster that has "
            "spec.backup, or a repository path (and its stanza)"
        )
    usable = [b for b in info.backups if not b.error]
    if not usable:
        return f"source {recovery.source!r}: stanza {stanza} in {repository} has no backup yet"
    if recovery.target_time is not None:
        target = recovery.target_time.timestamp()
        if all(b.stop > target for b in usable):
            first = datetime.fromtimestamp(min(b.stop for b in usable), UTC)
            return (
                f"source {recovery.source!r}: no backup of stanza {stanza} ends before "
                f"targetTime {recovery.target_time.isoformat()} (the first ends at "
                f"{first:%Y-%m-%d %H:%M:%S} UTC): choose a later target"
            )
    return None


def read_backup_info(recovery: RecoverySpec) -> BackupInfoFile | None:
    try:
        return parse_backup_info(Path(backup_info_path(recovery)).read_text())
    except OSError:
        return None


def source_problems(loaded: LoadedCluster) -> list[Problem]:
    """The manifest's restore source checked on this host (the local provider's
    repositories are this host's directories)."""
    recovery = loaded.cluster.spec.bootstrap.recovery
    if recovery is None:
        return []
    reason = source_reason(recovery, read_backup_info(recovery))
    return [] if reason is None else [Problem(loaded.source, FIELD, reason)]


def refuse_missing_source(loaded: LoadedCluster, only_new: bool = False) -> None:
    """ManifestError when the source cannot serve the restore. `only_new`: skip a cluster
    whose default state dir shows it was created already (`validate` has no --state-dir)."""
    if loaded.cluster.spec.bootstrap.recovery is None:
        return
    if only_new and _created(loaded.cluster.name):
        return
    problems = source_problems(loaded)
    if problems:
        raise ManifestError(problems)


def _created(name: str) -> bool:
    try:
        return StateDir(default_state_dir(name)).last_applied(name) is not None
    except StateError:
        return True  # a state dir is there, damaged: not a cluster to create
