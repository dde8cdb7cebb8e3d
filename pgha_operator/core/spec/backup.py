"""spec.backup: pgBackRest's repository, schedule, retention and compression.

Absent (the default) means no backups and no WAL archiving. Present, even as `backup: {}`,
turns both on with the defaults below. The repository outlives the cluster: `destroy`
keeps it unless told `--delete-backups`.
"""

from __future__ import annotations

import posixpath
from datetime import datetime
from typing import Annotated, Literal

from cronsim import CronSim, CronSimError
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, field_validator
from pydantic.alias_generators import to_camel

# Where a cluster's repository goes when the manifest names no path: outside every
# directory the cluster owns (topology.host_dirs, a local machine's root, the state dir),
# so that wiping the cluster never takes its backups with it.
DEFAULT_REPOSITORY_ROOT = "/var/lib/pgha-backups"

# Paths a repository must not be inside: the cluster's own directories on a real machine
# (destroy wipes them) and system directories.
FORBIDDEN_REPOSITORY_PREFIXES = (
    "/etc",
    "/run",
    "/proc",
    "/sys",
    "/dev",
    "/var/lib/pgha",
    "/var/lib/pgha-operator",  # the default state dirs (a local machine's root is inside)
)

# Any fixed instant: validation only needs one to walk the expression from.
_CRON_EPOCH = datetime(2000, 1, 1)


def check_cron(expression: str) -> str:
    """Five cron fields (minute hour day-of-month month day-of-week), as crontab(5)."""
    if len(expression.split()) != 5:
        raise ValueError(
            f"{expression!r} is not a cron expression: write five fields, minute hour "
            "day-of-month month day-of-week (e.g. '0 1 * * 0' for Sundays at 01:00)"
        )
    try:
        CronSim(expression, _CRON_EPOCH)
    except CronSimError as exc:
        raise ValueError(f"{expression!r} is not a cron expression: {exc}") from None
    return expression


CronExpression = Annotated[str, AfterValidator(check_cron)]


class Model(BaseModel):
    """models.Model's settings (models.py imports this module, so not that class)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True
    )


class PosixRepository(Model):
    """A directory: on the operator's host for the `local` provider."""

    type: Literal["posix"] = "posix"
    # Absolute; None: DEFAULT_REPOSITORY_ROOT/<cluster>.
    path: str | None = None

    @field_validator("path")
    @classmethod
    def _absolute_and_apart(cls, path: str | None) -> str | None:
        if path is None:
            return None
        if not posixpath.isabs(path):
            raise ValueError(f"{path!r} is not an absolute path")
        normal = posixpath.normpath(path)
        if normal == "/":
            raise ValueError("'/' cannot be a repository: give it a directory of its own")
        if normal != path.rstrip("/") or "//" in path:
            raise ValueError(f"{path!r} is not a normal path: write it as {normal!r}")
        for prefix in FORBIDDEN_REPOSITORY_PREFIXES:
            if normal == prefix.rstrip("/") or normal.startswith(prefix.rstrip("/") + "/"):
                raise ValueError(
                    f"{path!r} is under {prefix.rstrip('/')}: a repository must live outside "
                    "the cluster's own and the system's directories (destroy wipes the "
                    f"cluster's); e.g. {DEFAULT_REPOSITORY_ROOT}/<cluster>"
                )
        return normal


class BackupSchedule(Model):
    """When the running operator takes backups (cron, in the operator host's time zone).
    `diff: null` takes only full backups."""

    full: CronExpression = "0 1 * * 0"
    diff: CronExpression | None = "0 1 * * 1-6"


class BackupRetention(Model):
    """How many full backups pgBackRest keeps (their differentials and WAL go with them)."""

    full: Annotated[int, Strict(), Field(ge=1, le=100)] = 2


class BackupSpec(Model):
    repository: PosixRepository = PosixRepository()
    schedule: BackupSchedule = BackupSchedule()
    retention: BackupRetention = BackupRetention()
    compression: Literal["none", "gz", "bz2", "lz4", "zst"] = "zst"


def repository_path(backup: BackupSpec, cluster: str) -> str:
    """The repository directory of `cluster` (the manifest's, or the default)."""
    return backup.repository.path or posixpath.join(DEFAULT_REPOSITORY_ROOT, cluster)


# Providers whose repository works: on `local` every node and the operator share one host,
# so a directory is the repository. The others need a backup machine the nodes reach over
# SSH (issue #14), not built yet.
SUPPORTED_PROVIDERS = ("local",)


def backup_problems(provider: str, backup: BackupSpec | None) -> list[tuple[str, str]]:
    """spec.backup on a provider whose repository is not built yet, as (path, reason)."""
    if backup is None or provider in SUPPORTED_PROVIDERS:
        return []
    return [
        (
            "spec.backup",
            f"backups are not supported on the {provider} provider yet (a repository on a "
            "backup machine reached over SSH is still to come); only on local. Remove "
            "spec.backup",
        )
    ]
