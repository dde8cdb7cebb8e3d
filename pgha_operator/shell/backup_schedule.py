"""The running operator's backups (spec.backup.schedule): after each converged cycle, the
backup the schedule wants (core/backup_schedule.py) starts on a thread of its own, so a
backup of any length never holds up the loop; one at a time (and `backup.lock` against a
`backup` command). Never from `apply`: the first full backup of a new cluster starts with
the first converged cycle of `run`."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import TYPE_CHECKING

import structlog

from pgha_operator.core.backup_schedule import Due, due_backup
from pgha_operator.core.errors import OperatorError
from pgha_operator.shell.backups import backup_source, run_backup
from pgha_operator.shell.cycle import CycleReport
from pgha_operator.shell.hosts.base import HostError

if TYPE_CHECKING:
    from pgha_operator.shell.controller import Controller

log = structlog.get_logger("pgha-operator")

# After a failed scheduled backup, the next attempt waits this long (not every cycle).
RETRY_SECONDS = 300.0


class BackupScheduler:
    def __init__(self, ctl: Controller) -> None:
        self.ctl = ctl
        self._thread: threading.Thread | None = None
        self._failed_at: float | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __call__(self, report: CycleReport) -> None:
        backup = self.ctl.cluster.spec.backup
        facts = report.observed.backup
        if backup is None or not report.converged or self.running or facts is None:
            return
        if self._failed_at is not None and time.monotonic() - self._failed_at < RETRY_SECONDS:
            return
        due = due_backup(backup.schedule, facts.last_full, facts.last_backup, _now())
        if due is None:
            return
        try:
            leader, standby = backup_source(report.observed, self.ctl.topology.postgres)
        except OperatorError:
            return
        self._thread = threading.Thread(
            target=self._backup, args=(due, leader, standby), name="pgha-backup", daemon=True
        )
        self._thread.start()

    def _backup(self, due: Due, leader: str, standby: str | None) -> None:
        log.info("scheduled backup started", kind=due.kind, why=due.why, standby=standby)
        try:
            taken = run_backup(self.ctl, due.kind, leader, standby, f"scheduled {due.kind}")
        except (OperatorError, HostError, OSError) as exc:
            self._failed_at = time.monotonic()
            self.ctl.event(f"scheduled {due.kind} backup failed: {exc}")
            log.error("scheduled backup failed", kind=due.kind, error=str(exc))
            return
        self._failed_at = None
        label = taken.info.last.label if taken.info.last else "?"
        self.ctl.event(f"{due.kind} backup {label} taken ({due.why}) in {taken.seconds:.0f}s")
        log.info("scheduled backup done", kind=due.kind, label=label, seconds=taken.seconds)


def _now() -> datetime:
    """Now in the operator host's time zone: the schedule's cron is read in it."""
    return datetime.now().astimezone()
