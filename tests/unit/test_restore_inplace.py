"""`restore --to-time`: the plan's order and words, the backup it picks, its refusals, the
time argument and the etcd prefix it clears."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

import pytest

from pgha_operator.cli.restore import format_plan, target_time
from pgha_operator.core.facts.backup import BackupSet
from pgha_operator.core.plan.restore import RestoreRefused, restore_plan
from pgha_operator.shell.restore import patroni_prefix

NOW = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)


def backup(label: str, stop: datetime, error: bool = False) -> BackupSet:
    stamp = int(stop.timestamp())
    return BackupSet(label, "full", stamp - 5, stamp, 1, 1, None, None, error)


BACKUPS = (
    backup("A", NOW - timedelta(hours=3)),
    backup("B", NOW - timedelta(hours=2)),
    backup("C", NOW - timedelta(minutes=30)),
)


def test_replicas_stop_first_the_primary_is_restored_then_a_backup_then_replicas() -> None:
    target = NOW - timedelta(minutes=90)
    plan = restore_plan("demo", ("node1", "node2", "node3"), "node2", BACKUPS, target, NOW)
    assert (plan.primary, plan.replicas) == ("node2", ("node1", "node3"))
    assert plan.backup.label == "B"  # the newest that ended before the target
    assert [(s.kind, s.machines) for s in plan.steps] == [
        ("stop", ("node1", "node3")),
        ("stop", ("node2",)),
        ("clear-dcs", ()),
        ("restore", ("node2",)),
        ("start-primary", ("node2",)),
        ("backup", ("node2",)),
        ("wipe", ("node1", "node3")),
        ("converge", ("node1", "node3")),
    ]
    assert "after 2026-11-28 13:30:00+00:00 is lost: about 90 min of writes" in plan.loss
    text = format_plan(plan)
    assert text.startswith("Restore cluster demo to 2026-11-28 13:30:00+00:00 (from backup B)")
    assert "  4. restore node2's data directory from backup B" in text


def test_one_node_and_no_running_primary() -> None:
    target = NOW - timedelta(minutes=10)
    plan = restore_plan("solo", ("node1",), None, BACKUPS, target, NOW)
    assert plan.primary == "node1" and plan.replicas == ()
    assert [s.kind for s in plan.steps] == [
        "stop",
        "clear-dcs",
        "restore",
        "start-primary",
        "backup",
        "converge",
    ]
    assert plan.backup.label == "C" and "about 10 min of writes" in plan.loss


def test_refused_without_a_backup_before_the_target_or_for_a_future_time() -> None:
    early = NOW - timedelta(hours=4)
    with pytest.raises(RestoreRefused, match="no backup ends before"):
        restore_plan("demo", ("node1",), "node1", BACKUPS, early, NOW)
    failed = (backup("A", NOW - timedelta(hours=3), error=True),)
    with pytest.raises(RestoreRefused, match="no backup ends before"):
        restore_plan("demo", ("node1",), "node1", failed, NOW - timedelta(hours=1), NOW)
    with pytest.raises(RestoreRefused, match="is not in the past"):
        restore_plan("demo", ("node1",), "node1", BACKUPS, NOW + timedelta(seconds=1), NOW)


def test_the_time_needs_its_zone() -> None:
    assert target_time("2026-11-28 14:00:00Z") == datetime(2026, 11, 28, 14, tzinfo=UTC)
    with pytest.raises(argparse.ArgumentTypeError, match="no time zone"):
        target_time("2026-11-28 14:00:00")
    with pytest.raises(argparse.ArgumentTypeError, match="is not a time"):
        target_time("yesterday")


def test_patronis_keys_of_one_cluster_only() -> None:
    assert patroni_prefix("/service/", "demo") == "/service/demo/"
    assert patroni_prefix("/a/b/", "x") == "/a/b/x/"
