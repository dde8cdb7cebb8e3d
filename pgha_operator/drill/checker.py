"""The drill's checker: figures from what the writers, the prober and the watcher logged.

Pure: lists of records in, numbers out, so every rule is unit-tested on made-up logs.
Each figure's measure is drill/measures.py's; this module runs them and judges a run.
Times are time.monotonic() values; figures are seconds relative to the fault's start.

- write gap: the longest stretch without an acknowledged write that ends after the fault
  started (for the dominant outage: last ok before it -> first ok after it);
- acknowledged rows lost: acked by the server, missing on the final primary;
- dual-primary time: how long two nodes were both accepting writes. A node accepts
  writes over a run of consecutive probes that committed, from the first one's question
  to the last one's answer: an upper bound, so a real overlap is never missed;
- old primary stopped writes: end of the old primary's accepting run that spans the fault;
- rejoined: first moment every failed PostgreSQL node was a streaming replica again and
  every stopped etcd member healthy;
- read-only (quorum loss): when the last write anywhere was accepted, and for how long
  no node accepted one before the etcd members came back.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from pgha_operator.drill.measures import (
    accepting_spans,
    dual_primary,
    first_accepted,
    new_primary,
    read_only_window,
    rejoined_at,
    stale_acks,
    stopped_writes,
    write_gap,
)
from pgha_operator.drill.pgclient import Outcome
from pgha_operator.drill.prober import Probe
from pgha_operator.drill.watch import WatchSample
from pgha_operator.drill.writer import Attempt


@dataclass(frozen=True)
class FaultWindow:
    scenario: str
    started: float
    healed: float  # the fault undone: machine back, processes thawed, switchover returned
    old_primary: str | None
    old_primary_address: str | None = None  # as the writers see it (inet_server_addr)
    targets: tuple[str, ...] = ()  # machines the fault hit
    pg_targets: tuple[str, ...] = ()  # PostgreSQL nodes that must come back as replicas
    etcd_targets: tuple[str, ...] = ()  # etcd members that must come back healthy
    expect_read_only: bool = False  # quorum loss: the cluster must stop taking writes
    # Writes must flow again within the resume limit of this moment: the fault's start, or
    # its end when the outage is the point (quorum loss). None: the fault's start.
    recovery_from: float | None = None


@dataclass(frozen=True)
class RunFigures:
    scenario: str
    targets: tuple[str, ...]
    old_primary: str | None
    new_primary: str | None
    fault_seconds: float
    write_gap_seconds: float | None
    writes_resumed_seconds: float | None
    acked_rows: int
    acked_lost: int
    lost_rows: tuple[tuple[int, int], ...]
    failed_attempts: int
    unknown_attempts: int
    unknown_committed: int
    failed_but_present: int
    dual_primary_seconds: float
    dual_primary_nodes: tuple[str, ...]
    new_primary_accepted_seconds: float | None
    acked_by_old_primary_after_failover: int
    old_primary_stopped_writes_seconds: float | None
    rejoined_seconds: float | None
    read_only_after_seconds: float | None = None
    read_only_held_seconds: float | None = None
    converged_seconds: float | None = None
    problems: tuple[str, ...] = field(default_factory=tuple)
    # The failover's steps, seconds from the fault's start (drill/timeline.py)
    timeline: dict[str, Any] | None = None

    @property
    def verdict(self) -> str:
        return "FAIL" if self.problems else "PASS"

    def to_json(self) -> dict[str, Any]:
        def r(x: float | None) -> float | None:
            return None if x is None else round(x, 3)

        return {
            "scenario": self.scenario,
            "targets": list(self.targets),
            "oldPrimary": self.old_primary,
            "newPrimary": self.new_primary,
            "faultSeconds": r(self.fault_seconds),
            "writeGapSeconds": r(self.write_gap_seconds),
            "writesResumedSeconds": r(self.writes_resumed_seconds),
            "ackedRows": self.acked_rows,
            "ackedLost": self.acked_lost,
            "lostRows": [list(x) for x in self.lost_rows],
            "failedAttempts": self.failed_attempts,
            "unknownAttempts": self.unknown_attempts,
            "unknownCommitted": self.unknown_committed,
            "failedButPresent": self.failed_but_present,
            "dualPrimarySeconds": r(self.dual_primary_seconds),
            "dualPrimaryNodes": list(self.dual_primary_nodes),
            "newPrimaryAcceptedSeconds": r(self.new_primary_accepted_seconds),
            "ackedByOldPrimaryAfterFailover": self.acked_by_old_primary_after_failover,
            "oldPrimaryStoppedWritesSeconds": r(self.old_primary_stopped_writes_seconds),
            "rejoinedSeconds": r(self.rejoined_seconds),
            "readOnlyAfterSeconds": r(self.read_only_after_seconds),
            "readOnlyHeldSeconds": r(self.read_only_held_seconds),
            "convergedSeconds": r(self.converged_seconds),
            "timeline": self.timeline,
            "verdict": self.verdict,
            "problems": list(self.problems),
        }


# --- the whole run -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Measures:
    """What the logs show about one run, in absolute times (analyse makes them relative)."""

    acked: list[Attempt]
    failed: list[Attempt]
    unknown: list[Attempt]
    lost: list[tuple[int, int]]
    gap: float | None
    resumed: float | None
    overlap: float
    dual_nodes: tuple[str, ...]
    stopped: float | None
    promoted: str | None
    accepted: float | None
    stale: int
    rejoin: float | None
    read_only: tuple[float, float] | None


def _measure(
    fault: FaultWindow,
    attempts: Sequence[Attempt],
    probes: Sequence[Probe],
    samples: Sequence[WatchSample],
    present: Collection[tuple[int, int]],
    observed_until: float,
) -> _Measures:
    acked = [a for a in attempts if a.outcome == Outcome.OK]
    gap, resumed = write_gap((a.finished for a in acked), fault.started, observed_until)
    spans = accepting_spans(probes)
    overlap, dual_nodes = dual_primary(spans)
    stopped = None
    if fault.old_primary is not None:
        stopped = stopped_writes(spans.get(fault.old_primary, []), fault.started, observed_until)
    promoted = new_primary(spans, fault.old_primary, fault.started)
    return _Measures(
        acked=acked,
        failed=[a for a in attempts if a.outcome == Outcome.FAILED],
        unknown=[a for a in attempts if a.outcome == Outcome.UNKNOWN],
        lost=sorted((a.client, a.seq) for a in acked if (a.client, a.seq) not in present),
        gap=gap,
        resumed=resumed,
        overlap=overlap,
        dual_nodes=dual_nodes,
        stopped=stopped,
        promoted=promoted,
        accepted=first_accepted(spans.get(promoted, []), fault.started) if promoted else None,
        stale=stale_acks(acked, fault.old_primary_address, fault.started),
        rejoin=rejoined_at(samples, fault.pg_targets, fault.etcd_targets, fault.healed),
        read_only=read_only_window(probes, fault.started, fault.healed),
    )


def _resume_problem(fault: FaultWindow, m: _Measures, resume_limit: float) -> str | None:
    """Writes must flow again within `resume_limit` of `fault.recovery_from` (or start)."""
    recovery_from = fault.started if fault.recovery_from is None else fault.recovery_from
    if m.resumed is None and m.gap is not None:
        return "writes did not resume"
    if m.resumed is not None and m.resumed - recovery_from > resume_limit:
        return (
            f"writes resumed {m.resumed - recovery_from:.1f} s after "
            f"{'the fault ended' if recovery_from > fault.started else 'the fault'} "
            f"(limit {resume_limit:.0f} s)"
        )
    return None


def _problems(
    fault: FaultWindow, m: _Measures, converged_at: float | None, resume_limit: float
) -> list[str]:
    problems = []
    if m.lost:
        problems.append(f"{len(m.lost)} acknowledged rows lost")
    if m.overlap > 0:
        problems.append(f"two primaries for {m.overlap:.3f} s ({', '.join(m.dual_nodes)})")
    if m.stale:
        problems.append(f"{m.stale} writes through the load balancer acked by the old primary")
    if (resume := _resume_problem(fault, m, resume_limit)) is not None:
        problems.append(resume)
    if (fault.pg_targets or fault.etcd_targets) and m.rejoin is None:
        problems.append(f"{', '.join(fault.pg_targets + fault.etcd_targets)} did not rejoin")
    if converged_at is None:
        problems.append("the cluster did not return to Converged")
    if fault.expect_read_only and m.read_only is None:
        problems.append("the cluster kept accepting writes without an etcd quorum")
    return problems


def analyse(
    fault: FaultWindow,
    attempts: Sequence[Attempt],
    probes: Sequence[Probe],
    samples: Sequence[WatchSample],
    present: Collection[tuple[int, int]],
    observed_until: float,
    converged_at: float | None,
    resume_limit: float,
) -> RunFigures:
    """`present`: the (client, seq) rows found on the final primary; `resume_limit`:
    seconds after the fault was undone by which writes must flow again."""
    m = _measure(fault, attempts, probes, samples, present, observed_until)

    def rel(t: float | None) -> float | None:
        return None if t is None else t - fault.started

    # Read-only figures only for quorum-loss runs, where they are the point.
    read_only = m.read_only if fault.expect_read_only else None
    return RunFigures(
        scenario=fault.scenario,
        targets=fault.targets,
        old_primary=fault.old_primary,
        new_primary=m.promoted,
        fault_seconds=fault.healed - fault.started,
        write_gap_seconds=m.gap,
        writes_resumed_seconds=rel(m.resumed),
        acked_rows=len(m.acked),
        acked_lost=len(m.lost),
        lost_rows=tuple(m.lost[:20]),
        failed_attempts=len(m.failed),
        unknown_attempts=len(m.unknown),
        unknown_committed=sum(1 for a in m.unknown if (a.client, a.seq) in present),
        failed_but_present=sum(1 for a in m.failed if (a.client, a.seq) in present),
        dual_primary_seconds=m.overlap,
        dual_primary_nodes=m.dual_nodes,
        new_primary_accepted_seconds=rel(m.accepted),
        acked_by_old_primary_after_failover=m.stale,
        old_primary_stopped_writes_seconds=m.stopped,
        rejoined_seconds=rel(m.rejoin),
        read_only_after_seconds=read_only[0] if read_only else None,
        read_only_held_seconds=read_only[1] if read_only else None,
        converged_seconds=rel(converged_at),
        problems=tuple(_problems(fault, m, converged_at, resume_limit)),
    )
