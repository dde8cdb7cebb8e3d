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


BackupAction = CreateStanza
BACKUP_ACTIONS = (CreateStanza,)
