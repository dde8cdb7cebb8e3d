"""Actions on the pgBackRest repository (spec.backup), performed by shell/backup_execute.py."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CreateStanza:
    """Make the repository directory (owned by PostgreSQL's user), create the cluster's
    stanza in it and `pgbackrest check` it (a WAL switch archived end to end), on the
    primary's machine. Idempotent: stanza-create accepts a stanza that exists."""

    machine: str
    repository: str
    owner: str | None  # the repository's owner: the user PostgreSQL (archive-push) runs as
    barrier: bool = False

    @property
    def describe(self) -> str:
        return (
            f"create the backup stanza in {self.repository} and check archiving from {self.machine}"
        )


@dataclass(frozen=True)
class AdoptStanza:
    """The repository holds this cluster's name's stanza, left by `destroy` of a former
    cluster of that name (its marker says so): `pgbackrest stanza-upgrade` makes it this
    database's (the former backups stay, as a prior database), then `check`, then the
    marker goes."""

    machine: str
    repository: str
    owner: str | None
    marker: str
    barrier: bool = False

    @property
    def describe(self) -> str:
        return f"continue the stanza a destroyed cluster left in {self.repository} (stanza-upgrade)"


@dataclass(frozen=True)
class PushOlderTimelineWal:
    """After a failover (the primary on a new timeline): push the complete segments of the
    older timelines still in the new primary's pg_wal. With archive_mode=on a promoted
    replica never archives what it received, so a segment the old primary had not archived
    when it died would be missing from the repository; pgBackRest accepts a segment it
    already has (same checksum). Then the timeline is noted in `marker`."""

    machine: str
    timeline: int
    owner: str | None
    marker: str
    barrier: bool = False

    @property
    def describe(self) -> str:
        return (
            f"archive the older timelines' WAL still in {self.machine}'s pg_wal "
            f"(timeline {self.timeline})"
        )


BackupAction = CreateStanza | AdoptStanza | PushOlderTimelineWal
BACKUP_ACTIONS = (CreateStanza, AdoptStanza, PushOlderTimelineWal)
