"""One drill run, start to finish, and the drill as a whole (repeats, background operator).

A run: the cluster must be Converged; writers, prober and watcher start; after a warm-up
the fault is injected, held and undone; the run waits until writes flow, the failed
machines have rejoined and the cluster is Converged again (an operator does the repairs:
the one already running, or one the drill runs itself); then the final primary's rows
are compared with the acknowledged ones.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psycopg
import structlog

from pgha_operator.core.errors import PermanentError
from pgha_operator.drill.checker import FaultWindow, RunFigures, analyse
from pgha_operator.drill.faults import FAULTS
from pgha_operator.drill.lbwatch import LbWatcher
from pgha_operator.drill.measures import rejoined_at
from pgha_operator.drill.prober import Prober
from pgha_operator.drill.report import DrillResult, save_run_log
from pgha_operator.drill.target import DrillError, DrillRefused, Live, Target
from pgha_operator.drill.timeline import fence_of, lb_up_at, timeline
from pgha_operator.drill.watch import Watcher
from pgha_operator.drill.writer import SCHEMA_SQL, ClientTimeouts, Writer
from pgha_operator.shell.controller import Controller

log = structlog.get_logger("pgha-drill")

WARM_UP = 3.0  # seconds of steady writes before the fault
RESUME_SLACK = 40.0  # writes must flow again within ttl + this (see FaultWindow.recovery_from)
TAIL = 1.0  # seconds of writes after convergence, before the writers stop


@dataclass(frozen=True)
class DrillOptions:
    scenario: str
    repeat: int = 1
    seconds: float | None = None  # fault duration; None = the scenario's default
    clients: int = 4
    timeouts: ClientTimeouts = field(default_factory=ClientTimeouts)
    converge_timeout: float = 240.0  # before the first run and after each fault


def refusal(ctl: Controller, scenario: str, yes: bool) -> str | None:
    """Why the drill must not run, before anything is touched."""
    cluster = ctl.cluster
    if scenario not in FAULTS:
        return f"unknown scenario {scenario!r}; choose one of: {', '.join(FAULTS)}"
    if cluster.spec.drills != "allowed":
        source = ", ".join(ctl.paths)
        return (
            f"cluster {cluster.name} does not allow drills: a drill kills machines. Set "
            f"`spec.drills: allowed` in its manifest ({source}) to permit them"
        )
    if not yes:
        return (
            f"the {scenario} drill injects a real fault into cluster {cluster.name} "
            f"({FAULTS[scenario].summary}); add --yes to confirm"
        )
    return None


class BackgroundOperator:
    """`Controller.run` in a thread while the drill lasts, when no operator is running:
    someone must bring crashed machines back, exactly as `pgha-operator run` would."""

    def __init__(self, paths: Sequence[str], state_dir: Path, cluster: str) -> None:
        self.ctl = Controller(paths, state_dir=state_dir, cluster_name=cluster)
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> bool:
        """False when another operator holds the cluster's lock (it does the repairs)."""
        try:
            self.ctl.lock("drill operator")
        except PermanentError:
            return False
        self.thread = threading.Thread(
            target=self.ctl.run, args=(self.stop_event,), name="operator", daemon=True
        )
        self.thread.start()
        return True

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread:
            self.thread.join(timeout=60)
        self.ctl.unlock()


def wait_converged(target: Target, timeout: float) -> tuple[bool, str]:
    deadline = time.monotonic() + timeout
    decision = ""
    while True:
        try:
            phase, decision = target.phase()
        except Exception as exc:  # noqa: BLE001 - components restart under us
            phase, decision = "Unknown", str(exc)
        if phase == "Converged":
            return True, decision
        if time.monotonic() >= deadline:
            return False, decision
        time.sleep(1.0)


def _sql(
    conninfo: str, statements: Sequence[str], params: Sequence[Any] = (), timeout: float = 60
) -> list[Any]:
    """Run statements through the load balancer, retrying while it has no primary; the
    rows of the last one (which alone takes `params`)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(conninfo + " connect_timeout=3", autocommit=True) as conn:
                rows: list[Any] = []
                for i, stmt in enumerate(statements):
                    last = i == len(statements) - 1
                    cur = conn.execute(stmt, tuple(params) if last else None)
                    rows = cur.fetchall() if cur.description else []
                return rows
        except psycopg.Error as exc:
            if time.monotonic() >= deadline:
                raise DrillError(f"no answer through the load balancer: {exc}") from None
            time.sleep(0.5)


def run_once(target: Target, options: DrillOptions, number: int) -> tuple[RunFigures, Path]:
    """One run: its figures and the path of its raw log."""
    fault = FAULTS[options.scenario]
    ok, decision = wait_converged(target, options.converge_timeout)
    if not ok:
        raise DrillError(f"cluster {target.cluster.name} is not converged ({decision})")
    _sql(target.lb_conninfo(), SCHEMA_SQL)
    run_id = f"{options.scenario}-{int(time.time())}-{number}"
    writer = Writer(target.lb_conninfo(), run_id, options.clients, timeouts=options.timeouts)
    prober = Prober(target.node_conninfos())
    watcher = Watcher(target.rest_urls(), target.etcd_urls(), tls=target.tls)
    lb = LbWatcher(*target.lb_stats())
    live = Live(prober, watcher, writer)
    for part in (watcher, lb, prober, writer):
        part.start()
    try:
        time.sleep(WARM_UP)
        steady = live.wait_for(
            lambda: (
                len(prober.writable_now()) == 1
                and {a.client for a in writer.acked()} == set(range(1, options.clients + 1))
            ),
            30,
        )
        if not steady:
            raise DrillError("no steady writes through the load balancer before the fault")
        log.info("fault", scenario=options.scenario, run=number)
        window = fault.inject(target, live, options.seconds)
        log.info("fault undone; waiting for the cluster", scenario=options.scenario)
        converged_at = _recover(target, live, window, options.converge_timeout)
        time.sleep(TAIL)
    finally:
        writer.stop()
        observed_until = time.monotonic()
        prober.stop()
        watcher.stop()
        lb.stop()
    rows = _sql(
        target.lb_conninfo(),
        ["SELECT client_id, seq FROM pgha_drill.writes WHERE run_id = %s"],
        (run_id,),
    )
    log_path = save_run_log(target.state_dir, run_id, window, writer, prober, watcher)
    figures = analyse(
        window,
        writer.attempts,
        prober.probes,
        watcher.samples,
        present={(int(c), int(s)) for c, s in rows},
        observed_until=observed_until,
        converged_at=converged_at,
        resume_limit=target.cluster.timing.ttl + RESUME_SLACK,
    )
    return replace(figures, timeline=_timeline(target, window, figures, lb)), log_path


def _timeline(target: Target, window: FaultWindow, run: RunFigures, lb: LbWatcher) -> dict:
    """The failover's steps: the fencer's journal, then what prober, HAProxy and writers saw."""

    def at(seconds: float | None) -> float | None:
        return None if seconds is None else window.started + seconds

    promoted = at(run.new_primary_accepted_seconds)
    fence = fence_of(target.ctl.state.fences(), window.started, window.healed)
    return timeline(
        window.started,
        fence,
        promoted,
        lb_up_at(lb.samples, run.new_primary, window.started),
        at(run.writes_resumed_seconds),
    )


def _recover(target: Target, live: Live, window: FaultWindow, timeout: float) -> float | None:
    """Wait until the failed machines rejoined, writes flow and the cluster is Converged;
    the moment it was Converged, or None after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rejoined = rejoined_at(
            live.watcher.samples[-3:], window.pg_targets, window.etcd_targets, window.healed
        )
        writing = (live.writer.last_ok() or 0) > window.healed
        if rejoined is not None and writing:
            with contextlib.suppress(Exception):
                if target.phase()[0] == "Converged":
                    return time.monotonic()
        time.sleep(0.5)
    return None


def run_drill(
    paths: Sequence[str],
    state_dir: Path | None,
    cluster_name: str | None,
    options: DrillOptions,
    yes: bool,
    on_run: Callable[[int, RunFigures], None] | None = None,
) -> DrillResult:
    ctl = Controller(paths, state_dir=state_dir, cluster_name=cluster_name)
    reason = refusal(ctl, options.scenario, yes)
    if reason:
        raise DrillRefused(reason)
    target = Target.of(ctl)
    why_not = FAULTS[options.scenario].refusal(target)
    if why_not:
        raise DrillRefused(why_not)
    operator = BackgroundOperator(ctl.paths, ctl.state_dir, ctl.cluster.name)
    own = operator.start()
    target.lease = operator.ctl.leadership if own else None
    try:
        runs, logs = [], []
        for number in range(1, options.repeat + 1):
            figures, log_path = run_once(target, options, number)
            runs.append(figures)
            logs.append(str(log_path))
            if on_run:
                on_run(number, figures)
    finally:
        if own:
            operator.stop()
    spec = ctl.cluster.spec
    return DrillResult(
        cluster=ctl.cluster.name,
        scenario=options.scenario,
        clients=options.clients,
        timeouts=options.timeouts,
        profile=spec.profile,
        synchronous=spec.postgres.synchronous,
        ttl=ctl.cluster.timing.ttl,
        runs=runs,
        logs=logs,
        operator="drill" if own else "running",
    )
