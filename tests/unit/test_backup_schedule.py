"""The schedule's decision (core/backup_schedule.py): the first full at once, a missed slot
caught up once however many passed, full before differential, none when up to date."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pgha_operator.core.backup_schedule import due_backup, latest_slot
from pgha_operator.core.facts.backup import BackupSet
from pgha_operator.core.spec.backup import BackupSchedule

SCHEDULE = BackupSchedule(full="0 1 * * 0", diff="0 1 * * 1-6")  # Sundays; other days
# Wednesday 2026-11-25 12:00 UTC: the latest full slot is Sunday 22nd 01:00, the latest
# differential one Wednesday 25th 01:00.
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def made(kind: str, at: datetime) -> BackupSet:
    stamp = int(at.timestamp())
    return BackupSet(f"{kind}-{stamp}", kind, stamp, stamp + 60, 1, 1, None, None, False)


def test_latest_slot_is_at_or_before_now() -> None:
    assert latest_slot("0 1 * * 0", NOW) == datetime(2026, 11, 22, 1, 0, tzinfo=UTC)
    assert latest_slot("0 12 * * *", NOW) == NOW


def test_a_cluster_without_a_full_backup_wants_one_at_once() -> None:
    due = due_backup(SCHEDULE, None, None, NOW)
    assert due is not None and due.kind == "full" and "no full backup" in due.why


def test_missed_slots_are_caught_up_once() -> None:
    three_weeks_ago = made("full", NOW - timedelta(days=21))
    due = due_backup(SCHEDULE, three_weeks_ago, three_weeks_ago, NOW)
    assert due is not None and due.kind == "full" and "2026-11-22 01:00" in due.why
    # After that one full (taken now), nothing more is due: the missed slots are not replayed.
    caught_up = made("full", NOW)
    assert due_backup(SCHEDULE, caught_up, caught_up, NOW) is None


def test_a_differential_is_due_after_its_slot_and_not_before() -> None:
    sunday_full = made("full", datetime(2026, 11, 22, 1, 0, 5, tzinfo=UTC))
    tuesday_diff = made("diff", datetime(2026, 11, 24, 1, 0, 5, tzinfo=UTC))
    due = due_backup(SCHEDULE, sunday_full, tuesday_diff, NOW)
    assert due is not None and due.kind == "diff"
    wednesday_diff = made("diff", datetime(2026, 11, 25, 1, 0, 5, tzinfo=UTC))
    assert due_backup(SCHEDULE, sunday_full, wednesday_diff, NOW) is None
    fulls_only = BackupSchedule(full="0 1 * * 0", diff=None)
    assert due_backup(fulls_only, sunday_full, tuesday_diff, NOW) is None
