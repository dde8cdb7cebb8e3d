"""Which backup the schedule (spec.backup.schedule) wants now, if any (PURE).

Level-based, like the rest of the loop: from the newest full and newest backup of any
type in the repository and the schedule's latest slot at or before `now`, never from a
remembered timer. A backup older than the latest slot means that slot was missed: one
backup catches it up, however many slots passed (after it, the newest backup is newer
than the latest slot). A cluster with no full backup wants one at once: its first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from cronsim import CronSim

from pgha_operator.core.facts.backup import BackupSet
from pgha_operator.core.spec.backup import BackupSchedule

Kind = Literal["full", "diff"]


@dataclass(frozen=True)
class Due:
    kind: Kind
    why: str


def latest_slot(expression: str, now: datetime) -> datetime:
    """The schedule's last firing at or before `now` (aware: the operator's time zone).
    CronSim walks back from strictly before its start: start a second later."""
    return next(CronSim(expression, now + timedelta(seconds=1), reverse=True))


def due_backup(
    schedule: BackupSchedule,
    last_full: BackupSet | None,
    last_any: BackupSet | None,
    now: datetime,
) -> Due | None:
    if last_full is None:
        return Due("full", "the cluster has no full backup yet")
    full_slot = latest_slot(schedule.full, now)
    if last_full.start < full_slot.timestamp():
        return Due("full", f"the full backup of {full_slot:%Y-%m-%d %H:%M %Z} is due")
    if schedule.diff is None or last_any is None:
        return None
    diff_slot = latest_slot(schedule.diff, now)
    if last_any.start < diff_slot.timestamp():
        return Due("diff", f"the differential backup of {diff_slot:%Y-%m-%d %H:%M %Z} is due")
    return None
