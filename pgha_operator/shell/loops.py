"""The two ways the controller's cycle is driven: `apply` (until converged) and `run`
(forever, woken by manifest edits and fences; the fencer watches the primary in a thread
of its own)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from pgha_operator.core.errors import OperatorError
from pgha_operator.core.leadership import CAMPAIGN_SECONDS
from pgha_operator.shell.cycle import CycleReport
from pgha_operator.shell.primary_wait import pause_for_next_cycle
from pgha_operator.shell.status_http import Snapshot

if TYPE_CHECKING:
    from pgha_operator.core.fence_decision import FenceDecision
    from pgha_operator.shell.controller import Controller
    from pgha_operator.shell.fencer import Fencer
    from pgha_operator.shell.leadership import Leadership

log = structlog.get_logger("pgha-operator")

RESYNC_SECONDS = 2.0  # a converged cluster is re-observed this often
BUSY_SECONDS = 0.5  # after actions: re-observe soon to take the next step
STANDBY_LOOK_SECONDS = 2.0  # a standby observes the cluster this often (status only)


def next_delay(report: CycleReport, idle: float) -> float:
    """A TemporaryError's own delay wins; else soon after acting, `idle` otherwise."""
    if report.retry_after is not None:
        return report.retry_after
    return BUSY_SECONDS if report.plan.actions else idle


def timed_cycle(ctl: Controller, act: bool = True) -> CycleReport:
    """One cycle (a standby's reads only), recorded in the metrics with the operator's role."""
    start = time.perf_counter()
    report = ctl.cycle(act=act)
    ctl.metrics.record_cycle(report, time.perf_counter() - start, time.time())
    ctl.metrics.set_role(ctl.role.value)
    return report


class DecisionLog:
    """The cycle's one decision line, when it acted, failed or decided something new (a
    converged cluster is not announced every two seconds)."""

    def __init__(self, ctl: Controller) -> None:
        self.ctl = ctl
        self.last = ""

    def __call__(self, report: CycleReport) -> None:
        if report.done or report.error or report.decision != self.last:
            outcome = "failed" if report.error else "acted" if report.done else "no action"
            log.info(
                "decision",
                cluster=self.ctl.cluster.name,
                cycle=self.ctl.metrics.cycles,
                decision=report.decision,
                phase=report.phase,
                actions=[a.describe for a in report.done],
                outcome=outcome,
            )
        self.last = report.decision


def apply_until_converged(
    ctl: Controller, timeout: float, on_cycle: Callable[[CycleReport], None] | None = None
) -> CycleReport:
    """Reconcile until converged or the timeout; stops early on a permanent error.
    `on_cycle` (apply's progress line) hears every cycle and replaces the decision log."""
    deadline = time.monotonic() + timeout
    decisions = DecisionLog(ctl)
    acted = False
    confirmed = False
    while True:
        report = timed_cycle(ctl)
        acted = acted or bool(report.plan.actions)
        (on_cycle or decisions)(report)
        if report.permanent or time.monotonic() >= deadline:
            return report
        if report.converged:
            # Patroni applies a DCS change (and flags pending restarts) on its next loop:
            # after acting, converged must still hold one loop_wait later.
            if not acted or confirmed:
                return report
            confirmed = True
            time.sleep(ctl.cluster.timing.loop_wait + 1.0)
            continue
        confirmed = False
        # apply waits for the next step: poll soon, and at once when a primary appears
        delay = next_delay(report, BUSY_SECONDS)
        if report.retry_after is None:
            pause_for_next_cycle(ctl.clients, ctl.topology, report.observed, delay)
        else:
            time.sleep(delay)


def run_forever(ctl: Controller, stop: threading.Event) -> None:
    """Resync every few seconds, wake at once when a manifest file changes; while another
    operator leads, stand by (core/leadership.py says who acts)."""
    wake = threading.Event()
    leadership = ctl.leadership or ctl.stand_by()
    fencer = ctl.start_fencer()
    threading.Thread(
        target=fence_loop, args=(ctl, fencer, wake, stop), name="fencer", daemon=True
    ).start()
    watcher = threading.Thread(target=watch_manifests, args=(ctl.paths, wake, stop), daemon=True)
    watcher.start()
    from pgha_operator.shell.backup_schedule import BackupScheduler  # imports the controller

    decisions = DecisionLog(ctl)
    backups = BackupScheduler(ctl)
    while not stop.is_set():
        ctl.reload_manifest()
        if not leadership.refresh().act:
            stand_by(ctl, leadership, stop, decisions)
            continue
        report = one_cycle(ctl, act=True, decisions=decisions)
        if report is None:
            stop.wait(RESYNC_SECONDS)
            continue
        backups(report)
        pause(ctl, next_delay(report, RESYNC_SECONDS), wake, stop)
        wake.clear()


def one_cycle(ctl: Controller, act: bool, decisions: DecisionLog) -> CycleReport | None:
    """One cycle, surviving anything it throws (None then); logs its decision line."""
    try:
        report = timed_cycle(ctl, act)
    except OperatorError as exc:  # e.g. a damaged state file: said plainly, retried
        log.error("cycle refused", error=str(exc))
        return None
    except Exception as exc:  # the loop must survive anything one cycle throws
        log.exception("cycle failed", error=str(exc))
        return None
    ctl.last_cycle = Snapshot(report.status, time.monotonic())
    decisions(report)
    return report


def stand_by(
    ctl: Controller, leadership: Leadership, stop: threading.Event, decisions: DecisionLog
) -> None:
    """Until this operator may act: look at the lease every CAMPAIGN_SECONDS, and at the
    cluster (read-only, for status and for whether etcd runs at all) every few seconds."""
    next_look = 0.0
    while not stop.is_set():
        if time.monotonic() >= next_look:
            ctl.reload_manifest()
            one_cycle(ctl, act=False, decisions=decisions)
            next_look = time.monotonic() + STANDBY_LOOK_SECONDS
        if leadership.refresh().act:
            return
        stop.wait(CAMPAIGN_SECONDS)


def pause(ctl: Controller, delay: float, wake: threading.Event, stop: threading.Event) -> None:
    """Wait for the next cycle: woken at once by a manifest edit or a fence."""
    deadline = time.monotonic() + delay
    while not (stop.is_set() or wake.is_set()):
        left = deadline - time.monotonic()
        if left <= 0:
            return
        wake.wait(min(left, 0.5))


def fence_loop(
    ctl: Controller, fencer: Fencer, wake: threading.Event, stop: threading.Event
) -> None:
    """The fencer's own thread: probe the primary every interval and, between probes,
    wait on its death watch. A cycle never holds it up (a query to a frozen primary can
    block a cycle until it thaws); after a fence it wakes the loop to re-observe at once."""
    while not stop.is_set():
        started = time.monotonic()
        if fenced(ctl, guarded(fencer.probe)):
            wake.set()
        # Probes start every interval, however long one took (a TLS handshake is not free):
        # the death of a primary is then seen after probe_failures intervals, not more.
        # Meanwhile the fencer waits on the leader's death watch: a death the provider
        # reports is acted on at once.
        left = max(0.0, started + fencer.interval - time.monotonic())
        if fenced(ctl, guarded(partial(fencer.wait, left, stop))):
            wake.set()


def guarded(step: Callable[[], FenceDecision | None]) -> FenceDecision | None:
    """One step of the fencer; the thread survives anything it throws."""
    try:
        return step()
    except Exception as exc:  # noqa: BLE001 - logged; the next probe tries again
        log.exception("fencer step failed", error=str(exc))
        time.sleep(0.2)
        return None


def fenced(ctl: Controller, decision: FenceDecision | None) -> bool:
    """Record a fencing decision as an event; True when a machine was fenced."""
    if decision is None:
        return False
    ctl.event(decision.reason)
    return decision.fence


def watch_manifests(paths: list[str], wake: threading.Event, stop: threading.Event) -> None:
    from watchfiles import watch

    # Watch the directories: editors save by renaming a new file over the old one.
    targets = {
        str(Path(p).resolve() if Path(p).is_dir() else Path(p).resolve().parent) for p in paths
    }
    wanted = {str(Path(p).resolve()) for p in paths}
    for changes in watch(*targets, stop_event=stop, debounce=200, step=200):
        if any(path in wanted or str(Path(path).parent) in wanted for _, path in changes):
            wake.set()
