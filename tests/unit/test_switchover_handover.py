"""The assisted switchover's pure parts: pg_controldata and LSNs parsed, and handover(), the
decision to release Patroni's leader key before Patroni's own demote does."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from pgha_operator.core.facts.controldata import (
    ControlData,
    format_lsn,
    parse_controldata,
    parse_lsn,
)
from pgha_operator.core.switchover import HandoverView, handover

FIXTURES = Path(__file__).parent / "fixtures"


def test_lsn_round_trip() -> None:
    assert parse_lsn("0/1500718") == 0x1500718
    assert parse_lsn("1A/FF000028") == (0x1A << 32) | 0xFF000028
    assert format_lsn(parse_lsn("1A/FF000028")) == "1A/FF000028"
    for bad in ("", "0/", "x/1", "0/1/2", "123456789/0"):
        with pytest.raises(ValueError):
            parse_lsn(bad)


def test_real_pg_controldata_of_a_clean_shutdown() -> None:
    control = parse_controldata((FIXTURES / "pg_controldata_shut_down.txt").read_text())
    assert control == ControlData("shut down", 0x1500718, 1)
    assert control.shut_down


def test_a_replica_shut_down_or_a_running_primary_is_no_clean_primary_stop() -> None:
    text = "Database cluster state:               shut down in recovery\n"
    assert not parse_controldata(text).shut_down
    running = parse_controldata(
        "Database cluster state:               in production\n"
        "Latest checkpoint location:           0/3000060\n"
    )
    assert not running.shut_down and running.checkpoint_lsn == 0x3000060


def test_garbage_gives_unknown_fields() -> None:
    assert parse_controldata("pg_controldata: fatal: could not open file") == ControlData(
        "", None, None
    )


CHECKPOINT = 0x3000028
READY = HandoverView(
    guarded=True,
    patroni_done=False,
    elapsed=0.2,
    window=15,
    control=ControlData("shut down", CHECKPOINT, 1),
    archive_pending=0,
    candidate_in_recovery=True,
    candidate_received=CHECKPOINT + 0x68,  # the checkpoint record's end
)


def test_release_once_the_candidate_received_past_the_shutdown_checkpoint() -> None:
    decision = handover(READY)
    assert decision.release and decision.final
    assert "0/3000028" in decision.reason and "0/3000090" in decision.reason


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"control": None}, "not shut down yet (unknown)"),
        ({"control": ControlData("in production", CHECKPOINT, 1)}, "(in production)"),
        ({"control": ControlData("shutting down", CHECKPOINT, 1)}, "(shutting down)"),
        ({"control": ControlData("shut down", None, 1)}, "not shut down yet"),
        ({"archive_pending": 2}, "still archiving (2 WAL files)"),
        ({"archive_pending": None}, "still archiving (unknown WAL files)"),
        ({"candidate_received": None}, "position unknown"),
        ({"candidate_in_recovery": None}, "position unknown"),
        ({"candidate_received": CHECKPOINT}, "candidate received 0/3000028"),
        ({"candidate_received": CHECKPOINT - 1}, "candidate received 0/3000027"),
    ],
)
def test_wait_while_anything_could_still_be_lost(change: dict[str, object], reason: str) -> None:
    decision = handover(replace(READY, **change))  # type: ignore[arg-type]
    assert not decision.release and not decision.final
    assert reason in decision.reason


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"guarded": False}, "holds no lease"),
        ({"patroni_done": True}, "Patroni finished"),
        ({"candidate_in_recovery": False}, "no replica any more"),
        ({"elapsed": 15.1}, "within 15s"),
    ],
)
def test_leave_it_to_patroni(change: dict[str, object], reason: str) -> None:
    decision = handover(replace(READY, **change))  # type: ignore[arg-type]
    assert not decision.release and decision.final
    assert reason in decision.reason


def test_no_lease_wins_over_everything_else_being_ready() -> None:
    """The lease guard is a safety rule: without it, nothing is released, ever."""
    assert not handover(replace(READY, guarded=False, elapsed=0.0)).release
