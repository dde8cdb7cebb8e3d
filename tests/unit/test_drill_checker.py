"""The checker's rules on made-up logs: write gap, lost rows, two primaries, rejoin."""

from __future__ import annotations

import pytest

from pgha_operator.drill.checker import FaultWindow, analyse
from pgha_operator.drill.measures import (
    accepting_spans,
    dual_primary,
    read_only_window,
    rejoined_at,
    stale_acks,
    stopped_writes,
    write_gap,
)
from pgha_operator.drill.pgclient import Outcome
from pgha_operator.drill.prober import NodeState, Probe
from pgha_operator.drill.watch import NodeView, WatchSample
from pgha_operator.drill.writer import Attempt

W, R, U, X = NodeState.WRITABLE, NodeState.READ_ONLY, NodeState.UNKNOWN, NodeState.UNREACHABLE
REPLICA = NodeView("replica", "running", "streaming")
PRIMARY = NodeView("primary", "running")


def probes(node: str, states: str, start: float = 0.0, step: float = 1.0) -> list[Probe]:
    """One probe per character: w writable, r read-only, u unknown, x unreachable; each
    asked at start + i*step and answered 0.1 s later."""
    kinds = {"w": W, "r": R, "u": U, "x": X}
    return [
        Probe(node, start + i * step, start + i * step + 0.1, kinds[c])
        for i, c in enumerate(states)
    ]


def ok(client: int, seq: int, at: float, server: str = "10.0.0.1") -> Attempt:
    return Attempt(client, seq, at - 0.01, at, Outcome.OK, server=server)


def test_write_gap_is_the_longest_stretch_without_an_ack_after_the_fault() -> None:
    acks = [1.0, 2.0, 3.0, 3.5, 24.0, 24.5, 30.0]
    assert write_gap(acks, start=3.2, end=31.0) == (20.5, 24.0)


def test_write_gap_ignores_outages_before_the_fault() -> None:
    assert write_gap([0.0, 9.0, 10.0, 10.5, 11.0], start=10.2, end=11.2) == (0.5, 10.5)


def test_write_gap_when_writes_never_came_back_runs_to_the_end() -> None:
    assert write_gap([1.0, 2.0], start=2.5, end=12.0) == (10.0, None)


def test_write_gap_without_any_ack_before_the_fault_counts_from_the_fault() -> None:
    assert write_gap([7.0, 7.5], start=5.0, end=8.0) == (2.0, 7.0)


def test_accepting_spans_break_on_any_other_answer() -> None:
    spans = accepting_spans(probes("a", "wwrwwuw"))
    assert spans == {"a": [(0.0, 1.1), (3.0, 4.1), (6.0, 6.1)]}


def test_one_primary_handing_over_is_not_dual_primary() -> None:
    spans = accepting_spans(probes("a", "wwwrrr") + probes("b", "rrrrww"))
    assert dual_primary(spans) == (0.0, ())


def test_overlapping_writable_runs_are_dual_primary() -> None:
    # a accepts from 0 to 5.1, b from 3 to 6.1: both for 2.1 s.
    spans = accepting_spans(probes("a", "wwwwww") + probes("b", "rrrwwww"))
    total, nodes = dual_primary(spans)
    assert total == pytest.approx(2.1)
    assert nodes == ("a", "b")


def test_a_single_stray_write_inside_another_primary_run_counts() -> None:
    spans = accepting_spans(probes("a", "wwwww") + probes("b", "rrwrr"))
    total, nodes = dual_primary(spans)
    assert total == pytest.approx(0.1)
    assert nodes == ("a", "b")


def test_touching_runs_do_not_overlap() -> None:
    assert dual_primary({"a": [(0.0, 1.0)], "b": [(1.0, 2.0)]}) == (0.0, ())


def test_three_nodes_overlapping_count_once() -> None:
    spans = {"a": [(0.0, 10.0)], "b": [(2.0, 4.0)], "c": [(3.0, 5.0)]}
    total, nodes = dual_primary(spans)
    assert total == pytest.approx(5.0 - 2.0)
    assert nodes == ("a", "b", "c")


def test_stopped_writes() -> None:
    runs = [(0.0, 10.3), (30.0, 31.0)]
    assert stopped_writes(runs, start=10.0, observed_until=40.0) == pytest.approx(0.3)
    assert stopped_writes(runs, start=10.5, observed_until=40.0) == 0.0  # ended before
    assert stopped_writes([(0.0, 39.9)], start=10.0, observed_until=40.0) is None  # never
    assert stopped_writes([(20.0, 21.0)], start=10.0, observed_until=40.0) is None  # not primary


def test_rejoined_needs_every_target_streaming_and_etcd_healthy_after_the_fault() -> None:
    samples = [
        WatchSample(1.0, {"n1": REPLICA}, frozenset({"e1"})),  # before: does not count
        WatchSample(5.0, {"n1": None}, frozenset()),
        WatchSample(6.0, {"n1": NodeView("replica", "running", None)}, frozenset({"e1"})),
        WatchSample(7.0, {"n1": REPLICA}, frozenset()),
        WatchSample(8.0, {"n1": REPLICA}, frozenset({"e1"})),
    ]
    assert rejoined_at(samples, ["n1"], ["e1"], after=4.0) == 8.0
    assert rejoined_at(samples, ["n1"], [], after=4.0) == 7.0
    assert rejoined_at(samples, ["n1"], ["e1"], after=9.0) is None
    assert rejoined_at([WatchSample(5.0, {"n1": PRIMARY})], ["n1"], [], after=0.0) is None


def test_read_only_window() -> None:
    log = probes("a", "wwwrrrrrrr") + probes("b", "rrrrrrrrww")
    assert read_only_window(log, start=1.5, healed=8.0) == pytest.approx((0.6, 5.9))
    assert read_only_window(probes("a", "w" * 90, step=0.1), start=1.0, healed=8.0) is None
    # A quiet stretch shorter than ten probe rounds proves nothing.
    assert read_only_window(probes("a", "w" * 75, step=0.1), start=1.0, healed=8.0) is None


def test_stale_acks_count_old_primary_writes_after_the_balancer_switched() -> None:
    acked = [ok(1, 1, 1.0, "old"), ok(1, 2, 5.0, "new"), ok(2, 1, 6.0, "old"), ok(1, 3, 7.0)]
    assert stale_acks(acked, "old", after=2.0) == 1
    assert stale_acks(acked[:2], "old", after=2.0) == 0
    assert stale_acks(acked, None, after=2.0) == 0


def fault(**kw: object) -> FaultWindow:
    base: dict[str, object] = {
        "scenario": "crash-primary",
        "started": 10.0,
        "healed": 32.0,
        "old_primary": "a",
        "old_primary_address": "10.0.0.1",
        "targets": ("a",),
        "pg_targets": ("a",),
    }
    base.update(kw)
    return FaultWindow(**base)  # type: ignore[arg-type]


def crash_logs() -> tuple[list[Attempt], list[Probe], list[WatchSample]]:
    attempts = [ok(1, i, 5.0 + i * 0.5) for i in range(1, 10)]  # up to 9.5 on a
    attempts += [
        Attempt(1, 10, 9.9, 10.4, Outcome.UNKNOWN, error="connection lost"),
        Attempt(1, 11, 10.5, 10.5, Outcome.FAILED, error="refused"),
        Attempt(1, 12, 10.6, 10.6, Outcome.FAILED, error="refused"),
    ]
    attempts += [ok(1, 12 + i, 30.0 + i, "10.0.0.2") for i in range(1, 6)]  # 31..35 on b
    log = probes("a", "w" * 10 + "x" * 30, start=0.5) + probes("b", "r" * 29 + "w" * 11, 0.5)
    samples = [
        WatchSample(20.0, {"a": None, "b": PRIMARY}),
        WatchSample(36.0, {"a": REPLICA, "b": PRIMARY}),
    ]
    return attempts, log, samples


def test_analyse_a_clean_failover_passes() -> None:
    attempts, log, samples = crash_logs()
    present = {(a.client, a.seq) for a in attempts if a.outcome == Outcome.OK} | {(1, 10)}
    figures = analyse(fault(), attempts, log, samples, present, 40.0, 37.0, resume_limit=60)
    assert figures.verdict == "PASS", figures.problems
    assert figures.acked_rows == 14 and figures.acked_lost == 0
    assert figures.failed_attempts == 2 and figures.unknown_attempts == 1
    assert figures.unknown_committed == 1 and figures.failed_but_present == 0
    assert figures.write_gap_seconds == pytest.approx(31.0 - 9.5)
    assert figures.writes_resumed_seconds == pytest.approx(21.0)
    assert figures.new_primary == "b"
    assert figures.new_primary_accepted_seconds == pytest.approx(29.5 - 10.0)
    assert figures.old_primary_stopped_writes_seconds == 0.0
    assert figures.rejoined_seconds == pytest.approx(26.0)
    assert figures.converged_seconds == pytest.approx(27.0)
    data = figures.to_json()
    for key in (
        "writeGapSeconds",
        "ackedRows",
        "ackedLost",
        "failedAttempts",
        "unknownAttempts",
        "dualPrimarySeconds",
        "oldPrimaryStoppedWritesSeconds",
        "rejoinedSeconds",
    ):
        assert key in data
    assert data["verdict"] == "PASS"


def test_analyse_reports_every_failure() -> None:
    attempts, log, samples = crash_logs()
    present = {(a.client, a.seq) for a in attempts if a.outcome == Outcome.OK} - {(1, 9)}
    present |= {(1, 11)}  # a "failed" attempt that did commit: the writer mislabelled it
    log += probes("a", "w", start=31.0)  # the old primary takes a write while b is primary
    figures = analyse(fault(), attempts, log, [], present, 40.0, None, resume_limit=10)
    assert figures.verdict == "FAIL"
    assert figures.acked_lost == 1 and figures.lost_rows == ((1, 9),)
    assert figures.failed_but_present == 1
    assert figures.dual_primary_seconds == pytest.approx(0.1)
    problems = " | ".join(figures.problems)
    for words in (
        "1 acknowledged rows lost",
        "two primaries",
        "writes resumed 21.0 s",
        "did not rejoin",
        "Converged",
    ):
        assert words in problems


def test_analyse_quorum_loss_must_become_read_only() -> None:
    attempts = [ok(1, i, float(i)) for i in range(1, 5)] + [ok(1, 9, 25.0)]
    read_only = probes("a", "wwwwwrrrrrrrrrrrrrrrrrrrrwwww")
    window = fault(
        scenario="etcd-quorum-loss",
        started=3.5,
        healed=20.0,
        pg_targets=(),
        etcd_targets=(),
        expect_read_only=True,
        recovery_from=20.0,
    )
    figures = analyse(
        window, attempts, read_only, [], {(1, i) for i in (1, 2, 3, 4, 9)}, 30.0, 26.0, 60
    )
    assert figures.verdict == "PASS", figures.problems
    assert figures.read_only_after_seconds == pytest.approx(4.1 - 3.5)
    assert figures.read_only_held_seconds == pytest.approx(20.0 - 4.1)
    still_writing = probes("a", "w" * 290, step=0.1)
    figures = analyse(window, attempts, still_writing, [], set(), 30.0, 26.0, 60)
    assert "kept accepting writes without an etcd quorum" in " | ".join(figures.problems)
