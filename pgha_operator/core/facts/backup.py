"""Backups and WAL archiving as observed: `pgbackrest info --output=json` parsed into the
backup sets of one stanza, and PostgreSQL's pg_stat_archiver (PURE)."""

from __future__ import annotations

import configparser
import json
import re
from dataclasses import dataclass
from typing import Any

# pgBackRest's stanza status codes (info command): 0 ok, 1 missing stanza path, 2 no valid
# backups, 3 missing stanza data, 4 different cipher, 5 database mismatch, 6 requested
# backup not found, 99 other.
STANZA_OK = 0
STANZA_MISSING = 1
STANZA_NO_BACKUP = 2


@dataclass(frozen=True)
class BackupSet:
    label: str
    type: str  # full | diff | incr
    start: int  # Unix time
    stop: int
    size: int  # bytes of the database
    repository_size: int  # bytes in the repository (compressed)
    wal_start: str | None
    wal_stop: str | None
    error: bool  # a page checksum error was found while copying

    def as_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "type": self.type,
            "start": self.start,
            "stop": self.stop,
            "size": self.size,
            "repositorySize": self.repository_size,
            "walStart": self.wal_start,
            "walStop": self.wal_stop,
            "error": self.error,
        }


@dataclass(frozen=True)
class StanzaInfo:
    name: str
    status_code: int
    status: str  # pgBackRest's words ("ok", "no valid backups", "missing stanza path")
    system_id: int | None  # the database the stanza belongs to (its newest)
    backups: tuple[BackupSet, ...]  # oldest first
    wal_min: str | None  # the oldest and newest WAL segment archived (current database)
    wal_max: str | None
    backup_running: bool

    @property
    def exists(self) -> bool:
        return self.status_code not in (STANZA_MISSING,)

    @property
    def last(self) -> BackupSet | None:
        return self.backups[-1] if self.backups else None


class InfoParseError(ValueError):
    """`pgbackrest info` printed something that is not its JSON."""


def parse_info(text: str, stanza: str) -> StanzaInfo:
    """One stanza of `pgbackrest info --output=json` (a list of stanzas)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InfoParseError(f"pgbackrest info printed no JSON: {exc}") from None
    if not isinstance(data, list):
        raise InfoParseError("pgbackrest info: expected a list of stanzas")
    for entry in data:
        if isinstance(entry, dict) and entry.get("name") == stanza:
            return _stanza(entry)
    return StanzaInfo(stanza, STANZA_MISSING, "missing stanza", None, (), None, None, False)


def _stanza(entry: dict[str, Any]) -> StanzaInfo:
    status = entry.get("status") or {}
    dbs = entry.get("db") or []
    # After stanza-upgrade (a new database of the same name) the older databases' backups
    # are listed too: only the current one's belong to this cluster.
    current = dbs[-1].get("id") if dbs else None
    archives = [a for a in entry.get("archive") or [] if _db_id(a) == current]
    lock = (status.get("lock") or {}).get("backup") or {}
    return StanzaInfo(
        name=str(entry["name"]),
        status_code=int(status.get("code", 99)),
        status=str(status.get("message", "")),
        system_id=int(dbs[-1]["system-id"]) if dbs else None,
        backups=tuple(_backup(b) for b in entry.get("backup") or [] if _db_id(b) == current),
        wal_min=archives[-1].get("min") if archives else None,
        wal_max=archives[-1].get("max") if archives else None,
        backup_running=bool(lock.get("held", False)),
    )


def _db_id(entry: dict[str, Any]) -> Any:
    return (entry.get("database") or {}).get("id")


def _backup(b: dict[str, Any]) -> BackupSet:
    info = b.get("info") or {}
    archive = b.get("archive") or {}
    stamp = b.get("timestamp") or {}
    return BackupSet(
        label=str(b["label"]),
        type=str(b["type"]),
        start=int(stamp.get("start", 0)),
        stop=int(stamp.get("stop", 0)),
        size=int(info.get("size", 0)),
        repository_size=int((info.get("repository") or {}).get("size", 0)),
        wal_start=archive.get("start"),
        wal_stop=archive.get("stop"),
        error=bool(b.get("error", False)),
    )


@dataclass(frozen=True)
class ArchiverFacts:
    """pg_stat_archiver on the primary; times are Unix seconds, None when never."""

    archived_count: int
    last_archived_wal: str | None
    last_archived_time: float | None
    failed_count: int
    last_failed_wal: str | None
    last_failed_time: float | None

    @property
    def failing(self) -> bool:
        """The newest attempt failed (PostgreSQL keeps retrying the same segment)."""
        if self.last_failed_time is None:
            return False
        return self.last_archived_time is None or self.last_failed_time > self.last_archived_time


@dataclass(frozen=True)
class BackupFacts:
    """What the cycle knows of backups: whether the repository holds the cluster's stanza
    (its backup.info) and for which database, and the primary's archiver and database
    system identifier (None: no primary answered)."""

    stanza_exists: bool
    stanza_system_id: int | None = None
    archiver: ArchiverFacts | None = None
    system_id: int | None = None
    last_backup: BackupSet | None = None  # the newest in backup.info
    last_full: BackupSet | None = None  # the newest full one
    # The database whose cluster `destroy` left this stanza behind (its marker file)
    destroyed_system_id: int | None = None
    # The newest timeline whose predecessors' WAL the operator pushed from its primary's
    # pg_wal (its marker file; None: never, i.e. timeline 1)
    pushed_timeline: int | None = None

    @property
    def adoptable(self) -> bool:
        """The foreign stanza is that of a destroyed cluster of this name: this cluster may
        continue it (stanza-upgrade; the old backups stay, listed as a prior database)."""
        return self.foreign_stanza and self.destroyed_system_id == self.stanza_system_id

    @property
    def foreign_stanza(self) -> bool:
        """The stanza belongs to another database: a cluster of the same name destroyed
        with its backups kept. pgBackRest refuses to archive this cluster's WAL into it."""
        return (
            self.stanza_exists
            and None not in (self.stanza_system_id, self.system_id)
            and self.stanza_system_id != self.system_id
        )


@dataclass(frozen=True)
class BackupInfoFile:
    """A stanza's backup.info in the repository: its database and current backup sets."""

    system_id: int | None
    backups: tuple[BackupSet, ...]  # oldest first


def parse_backup_info(text: str) -> BackupInfoFile:
    """backup.info is INI with JSON values (its [backrest] section appears twice, so not
    strict); a file that does not parse has no system id and no backups."""
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # labels keep case
    try:
        parser.read_string(text)
        system_id = int(parser.get("db", "db-system-id"))
        db_id = int(parser.get("db", "db-id"))
    except (configparser.Error, ValueError):
        return BackupInfoFile(None, ())
    current = parser["backup:current"] if parser.has_section("backup:current") else {}
    backups = []
    for label, value in current.items():
        try:
            entry = json.loads(value)
            if entry.get("db-id") == db_id:  # older databases' sets (stanza-upgrade) aside
                backups.append(_backup_info_entry(label, entry))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # a set pgBackRest itself would list is never malformed; skip it
    return BackupInfoFile(system_id, tuple(sorted(backups, key=lambda b: b.stop)))


def _backup_info_entry(label: str, entry: dict[str, Any]) -> BackupSet:
    return BackupSet(
        label=label,
        type=str(entry["backup-type"]),
        start=int(entry["backup-timestamp-start"]),
        stop=int(entry["backup-timestamp-stop"]),
        size=int(entry.get("backup-info-size", 0)),
        repository_size=int(entry.get("backup-info-repo-size", 0)),
        wal_start=entry.get("backup-archive-start"),
        wal_stop=entry.get("backup-archive-stop"),
        error=bool(entry.get("backup-error", False)),
    )


def format_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def destroyed_marker(repository: str, stanza: str) -> str:
    """The file `destroy` leaves beside a kept stanza, naming the database it belonged to.
    At the repository's top, where pgBackRest looks at nothing but archive/ and backup/."""
    return f"{repository.rstrip('/')}/{stanza}.destroyed-cluster.json"


def destroyed_marker_text(stanza: str, system_id: int) -> str:
    return json.dumps({"stanza": stanza, "systemId": system_id}) + "\n"


def parse_destroyed_marker(text: str) -> int | None:
    """The destroyed database's system identifier; None for anything else."""
    try:
        value = json.loads(text).get("systemId")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None


def timeline_marker(repository: str, stanza: str) -> str:
    """Where the operator notes the timeline it last filled the archive for (a failover)."""
    return f"{repository.rstrip('/')}/{stanza}.wal-timeline"


def parse_timeline_marker(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


# A WAL segment's file name: timeline, log and segment, eight hex digits each.
_SEGMENT = re.compile(r"^([0-9A-F]{8})[0-9A-F]{16}$")


def older_timeline_segments(names: list[str], timeline: int) -> list[str]:
    """The complete WAL segments of timelines before `timeline` among pg_wal's file names,
    in order (no .partial, .history or .backup files)."""
    found = []
    for name in names:
        match = _SEGMENT.match(name)
        if match and int(match.group(1), 16) < timeline:
            found.append(name)
    return sorted(found)
