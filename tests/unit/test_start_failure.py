"""parse_start_failure: real PostgreSQL / pg_rewind / Patroni log tails -> cause + reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgha_operator.core.facts.start_failure import Cause, parse_start_failure

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


@pytest.mark.parametrize(
    ("name", "cause", "reason"),
    [
        (
            "start_failed_patroni_diverged.log",
            Cause.DIVERGED_TIMELINE,
            "FATAL: requested timeline 2 is not a child of this server's history",
        ),
        (
            "start_failed_patroni_config_error.log",
            Cause.CONFIG_ERROR,
            'FATAL: configuration file "/tmp/pgha-test-nbvpj9dy/state/machines/node2/pg/data/'
            'postgresql.auto.conf" contains errors',
        ),
        (
            "start_failed_pg_timeline_not_child.log",
            Cause.DIVERGED_TIMELINE,
            "FATAL: requested timeline 2 is not a child of this server's history",
        ),
        (
            "pg_standby_new_timeline_forked.log",
            Cause.DIVERGED_TIMELINE,
            "LOG: new timeline 2 forked off current database system timeline 1 before "
            "current recovery point 0/309ED58",
        ),
        (
            "pg_rewind_missing_wal.txt",
            Cause.REWIND_FAILED,
            "pg_rewind: error: could not find previous WAL record at 0/2000100",
        ),
        (
            "start_failed_patroni_rewind_failed.log",
            Cause.REWIND_FAILED,
            "ERROR: Failed to rewind from healthy primary: node1",
        ),
        (
            "start_failed_pg_invalid_value.log",
            Cause.CONFIG_ERROR,
            'FATAL: configuration file "/tmp/hf-pg/a/postgresql.auto.conf" contains errors',
        ),
        (
            "start_failed_pg_unknown_parameter.log",
            Cause.CONFIG_ERROR,
            'FATAL: configuration file "/tmp/hf-pg/a/postgresql.auto.conf" contains errors',
        ),
        (
            "start_failed_pg_insufficient_settings.log",
            Cause.CONFIG_ERROR,
            "FATAL: recovery aborted because of insufficient parameter settings",
        ),
        (
            "start_failed_pg_data_dir_permissions.log",
            Cause.CONFIG_ERROR,
            'FATAL: data directory "/tmp/hf-pg/a" has invalid permissions',
        ),
    ],
)
def test_real_log_tails_are_classified(name: str, cause: Cause, reason: str) -> None:
    failure = parse_start_failure(fixture(name))
    assert (failure.cause, failure.reason) == (cause, reason)
    assert failure.reinit_fixes == (cause in (Cause.DIVERGED_TIMELINE, Cause.REWIND_FAILED))


def test_lab_notes_history_mismatch_is_a_diverged_timeline() -> None:
    # The rejoin failure LAB-NOTES recorded by hand (PostgreSQL's wording, WAL location cut).
    line = (
        "2026-11-20 10:00:00.000 UTC [77] FATAL:  according to history file, WAL location "
        "0/5000000 belongs to timeline 9, but previous recovered WAL file came from timeline 10"
    )
    assert parse_start_failure(line).cause == Cause.DIVERGED_TIMELINE


def test_the_newest_cause_wins_over_an_older_incident() -> None:
    """An old divergence in the log, then a config error now: reinit would not help."""
    tail = fixture("start_failed_pg_timeline_not_child.log") + fixture(
        "start_failed_pg_invalid_value.log"
    )
    assert parse_start_failure(tail).cause == Cause.CONFIG_ERROR
    reverse = fixture("start_failed_pg_invalid_value.log") + fixture(
        "start_failed_pg_timeline_not_child.log"
    )
    assert parse_start_failure(reverse).cause == Cause.DIVERGED_TIMELINE


@pytest.mark.parametrize(
    ("tail", "reason"),
    [
        ("", "no error in the log tail"),
        ("2026-11-28 04:53:26.238 UTC [1] LOG:  all fine\n", "no error in the log tail"),
        (
            "2026-11-28 04:53:26.238 UTC [9] FATAL:  could not write lock file: No space left\n"
            "2026-11-28 04:53:26.239 UTC [9] LOG:  database system is shut down\n",
            "FATAL: could not write lock file: No space left",
        ),
        (
            '2026-11-28 05:04:52.000 UTC [7] FATAL:  could not open file "global/pg_control"\n'
            "2026-11-28 05:04:52.496 UTC [31731] FATAL:  the database system is starting up\n"
            "2026-11-28 05:27:17.904 UTC [21393] FATAL:  terminating connection due to "
            "unexpected postmaster exit\n"
            "2026-11-28 05:27:17,947 ERROR: get_postgresql_status\n",
            'FATAL: could not open file "global/pg_control"',
        ),
    ],
)
def test_anything_else_is_unknown_and_never_reinitialised(tail: str, reason: str) -> None:
    failure = parse_start_failure(tail)
    assert (failure.cause, failure.reason, failure.reinit_fixes) == (Cause.UNKNOWN, reason, False)


def test_reason_is_stable_across_retries_and_bounded() -> None:
    first = parse_start_failure("2026-11-28 04:53:26.238 UTC [11] FATAL:  x" + " y" * 400)
    again = parse_start_failure("2026-11-28 04:54:01.002 UTC [98] FATAL:  x" + " y" * 400)
    assert first == again and len(first.reason) <= 300
