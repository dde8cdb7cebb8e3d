"""pgBackRest on one PostgreSQL node: stanza-create, check, backup and info, run as
PostgreSQL's user with the node's pgbackrest.conf (core/render/pgbackrest.py). Nothing else
runs pgBackRest (PostgreSQL itself runs archive-push and archive-get)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pgha_operator.core.errors import OperatorError
from pgha_operator.core.facts.backup import InfoParseError, StanzaInfo, parse_info
from pgha_operator.core.render.pgbackrest import PGBACKREST, backup_paths
from pgha_operator.core.topology import Layout
from pgha_operator.shell.hosts.base import Host

BackupType = Literal["full", "diff", "incr"]

STANZA_TIMEOUT = 120.0  # seconds: stanza-create + check (a WAL switch, archived)
ARCHIVE_TIMEOUT = 30  # pgBackRest's own wait for a WAL segment to reach the repository
BACKUP_TIMEOUT = 3600.0


@dataclass(frozen=True)
class PgBackRest:
    host: Host
    layout: Layout
    stanza: str
    user: str | None  # PostgreSQL's user: pgBackRest must read its data directory

    def _argv(self, *command: str) -> list[str]:
        paths = backup_paths(self.layout)
        # The passfile through libpq's environment: pgBackRest has no password option.
        return [
            "env",
            f"PGPASSFILE={paths.passfile}",
            PGBACKREST,
            f"--config={paths.config}",
            f"--stanza={self.stanza}",
            *command,
        ]

    def _run(self, *command: str, timeout: float) -> str:
        return self.host.run(self._argv(*command), user=self.user, timeout=timeout).stdout

    def create_stanza(self) -> None:
        """Idempotent: an existing stanza of the same database is accepted."""
        self._run("stanza-create", timeout=STANZA_TIMEOUT)

    def upgrade_stanza(self) -> None:
        """The stanza made this database's (a new system identifier), the former kept."""
        self._run("stanza-upgrade", timeout=STANZA_TIMEOUT)

    def archive_push(self, segment_path: str) -> None:
        """One WAL segment by hand; one the repository has already (same checksum) is
        accepted with a warning."""
        self._run("archive-push", segment_path, timeout=STANZA_TIMEOUT)

    def check(self) -> None:
        """The configuration, the repository and archiving end to end (a WAL switch)."""
        self._run("check", f"--archive-timeout={ARCHIVE_TIMEOUT}", timeout=STANZA_TIMEOUT)

    def backup(self, kind: BackupType, from_standby: bool) -> None:
        standby = "--backup-standby" if from_standby else "--no-backup-standby"
        self._run("backup", f"--type={kind}", standby, timeout=BACKUP_TIMEOUT)

    def info(self) -> StanzaInfo:
        out = self._run("info", "--output=json", timeout=60)
        try:
            return parse_info(out, self.stanza)
        except InfoParseError as exc:
            raise OperatorError(f"{self.host.name}: {exc}") from None
