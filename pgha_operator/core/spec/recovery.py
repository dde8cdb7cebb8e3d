"""spec.bootstrap.recovery: a new cluster built from another's pgBackRest backup (PURE).

The source is read, never written: the new cluster restores the source's backup with the
source's stanza (a configuration of its own, `pgbackrest-source.conf`), replays its archive
up to the target, is promoted onto a new timeline, and from then on archives into its own
stanza in its own repository (spec.backup). Only read at the cluster's creation (Patroni's
custom bootstrap); a running cluster ignores it.
"""

from __future__ import annotations

import posixpath
import re
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AwareDatetime, Field, field_validator, model_validator

from pgha_operator.core.spec.backup import (
    DEFAULT_REPOSITORY_ROOT,
    Model,
    PosixRepository,
    repository_path,
)
from pgha_operator.core.spec.patterns import NAME_PATTERN

if TYPE_CHECKING:
    from pgha_operator.core.spec.models import ClusterSpec

# PostgreSQL's spelling of an LSN: two hexadecimal halves.
LSN_PATTERN = r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$"


class RecoverySpec(Model):
    """Where the backup comes from and how far its archive is replayed: exactly one of
    targetTime (a time with its zone), targetLsn, or latest (the end of the archive)."""

    # A cluster's name (its repository: /var/lib/pgha-backups/<name>, stanza <name>) or an
    # absolute repository path (stanza: `stanza`, else the path's last component).
    source: Annotated[str, Field(min_length=1)]
    stanza: Annotated[str | None, Field(pattern=NAME_PATTERN)] = None
    target_time: AwareDatetime | None = None
    target_lsn: Annotated[str | None, Field(pattern=LSN_PATTERN)] = None
    latest: Literal[True] | None = None

    @field_validator("source")
    @classmethod
    def _name_or_path(cls, source: str) -> str:
        if source.startswith("/"):
            return PosixRepository(path=source).path or source  # its path rules
        if not re.match(NAME_PATTERN, source):
            raise ValueError(
                f"{source!r} is neither a cluster name (lowercase letters, digits and '-') "
                "nor an absolute repository path"
            )
        return source

    @field_validator("target_time", mode="before")
    @classmethod
    def _iso_time(cls, value: object) -> object:
        """PostgreSQL's own spelling too (`now()` prints `...+00`): ISO 8601 as Python reads it."""
        if not isinstance(value, str):
            return value
        try:
            return datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f"{value!r} is not a time: write it like '2026-11-28 14:00:00+00:00'"
            ) from None

    @model_validator(mode="after")
    def _one_target(self) -> RecoverySpec:
        given = [
            name
            for name, value in (
                ("targetTime", self.target_time),
                ("targetLsn", self.target_lsn),
                ("latest", self.latest),
            )
            if value is not None
        ]
        if len(given) != 1:
            said = f"{' and '.join(given)} are both given" if given else "none is given"
            raise ValueError(f"give exactly one of targetTime, targetLsn or latest: true ({said})")
        return self


class BootstrapSpec(Model):
    """How a new cluster's first primary is made: initdb (the default) or, with `recovery`,
    a restore of another cluster's backup."""

    recovery: RecoverySpec | None = None


def source_repository(recovery: RecoverySpec) -> str:
    """The source's repository directory."""
    if recovery.source.startswith("/"):
        return recovery.source
    return posixpath.join(DEFAULT_REPOSITORY_ROOT, recovery.source)


def source_stanza(recovery: RecoverySpec) -> str:
    """The source's stanza: given, the cluster's name, or the repository's last component."""
    if recovery.stanza:
        return recovery.stanza
    return posixpath.basename(recovery.source.rstrip("/"))


RestoreType = Literal["time", "lsn", "default"]


def restore_target(recovery: RecoverySpec) -> tuple[RestoreType, str | None]:
    """pgBackRest's --type and --target: `default` replays the whole archive."""
    if recovery.target_time is not None:
        return "time", recovery.target_time.isoformat(sep=" ")
    if recovery.target_lsn is not None:
        return "lsn", recovery.target_lsn.upper()
    return "default", None


def recovery_problems(cluster_name: str, spec: ClusterSpec) -> list[tuple[str, str]]:
    """A source that is the cluster's own stanza: the restored cluster archives into its
    stanza from its first second, so it would write into the backups it restores from."""
    recovery = spec.bootstrap.recovery
    if recovery is None:
        return []
    problems: list[tuple[str, str]] = []
    provider = spec.provider.type
    if provider != "local":
        problems.append(
            (
                "spec.bootstrap.recovery",
                f"a restore is not supported on the {provider} provider yet; only on local",
            )
        )
    backup = spec.backup
    own_repository = repository_path(backup, cluster_name) if backup is not None else None
    same_stanza = source_stanza(recovery) == cluster_name
    if same_stanza and (
        not recovery.source.startswith("/") or source_repository(recovery) == own_repository
    ):
        problems.append(
            (
                "spec.bootstrap.recovery.source",
                f"{recovery.source!r} is this cluster's own stanza ({cluster_name}): a restored "
                "cluster archives into its own stanza, which must not be the one it restores "
                "from; give the new cluster another name (or restore in place with "
                "`pgha-operator restore`)",
            )
        )
    return problems
