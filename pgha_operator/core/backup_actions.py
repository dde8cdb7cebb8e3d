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


BackupAction = CreateStanza | AdoptStanza
BACKUP_ACTIONS = (CreateStanza, AdoptStanza)
