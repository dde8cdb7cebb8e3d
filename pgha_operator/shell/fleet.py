"""`run -f DIR`: every cluster whose manifest is in DIR, each in its own loop (a thread with
its own Controller), so a broken manifest, an unreachable etcd or a slow cycle in one
cluster never delays another. The directory is rescanned every second: a new file starts
a loop, a removed one stops it (the cluster keeps running; nothing is destroyed). Which
loops to start and stop, and whether they are alive, is decided in core/fleet.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog

from pgha_operator.core.fleet import FileScan, FleetChanges, LoopHealth, fleet_changes, loop_health
from pgha_operator.core.spec import manifest_files, parse_text
from pgha_operator.shell.sd_notify import Notifier
from pgha_operator.shell.status_http import Snapshot

log = structlog.get_logger("pgha-operator")

SCAN_SECONDS = 1.0  # a new or removed manifest file is seen within this
RETRY_SECONDS = 10.0  # a cluster that could not start (a failed preflight) is retried
EXTEND_START_USEC = 30_000_000  # while starting: systemd waits this much longer per message
STOP_SECONDS = 30.0  # at exit: how long the loops get to finish their cycle


class ClusterLoop(Protocol):
    """What the fleet needs of a controller (shell/controller.py's Controller is one)."""

    state_dir: Path
    last_cycle: Snapshot | None

    def prepare(self, standby: bool = False) -> None: ...
    def run(self, stop: threading.Event) -> None: ...
    def unlock(self) -> None: ...
    def cycle(self, act: bool = True) -> Any: ...


# (manifest file, cluster name, state dir or None for the default) -> its controller
ControllerFactory = Callable[[str, str, Path | None], ClusterLoop]


@dataclass
class Member:
    """One cluster's loop."""

    name: str
    source: str
    started: float
    stop: threading.Event = field(default_factory=threading.Event)
    beat: float | None = None  # when its loop last completed a cycle (or a start attempt)
    error: str | None = None  # why it is not running, while it retries
    ctl: ClusterLoop | None = None
    thread: threading.Thread | None = None


class Fleet:
    def __init__(
        self,
        directory: Path,
        make_controller: ControllerFactory,
        state_root: Path | None = None,
        *,
        retry_seconds: float = RETRY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory
        self.make_controller = make_controller
        self.state_root = state_root
        self.retry_seconds = retry_seconds
        self.clock = clock
        self.members: dict[str, Member] = {}
        self.stopping: dict[str, Member] = {}
        self.file_problems: dict[str, str] = {}
        self.conflicts: Mapping[str, tuple[str, ...]] = {}
        self.ready_sent = False
        self._last_status = ""
        self._hung: tuple[str, ...] = ()

    # --- the directory --------------------------------------------------------------------

    def scan(self) -> dict[str, FileScan]:
        try:
            files = manifest_files(self.directory)
        except OSError as exc:
            log.error(
                "cannot list the manifest directory", path=str(self.directory), error=str(exc)
            )
            # Unlistable: change nothing (every running loop goes on).
            return {m.source: FileScan(None, str(exc)) for m in self.members.values()}
        found: dict[str, FileScan] = {}
        for f in files:
            try:
                text = f.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                found[str(f)] = FileScan(None, f"{f}: cannot read: {exc}")
                continue
            loaded, problems = parse_text(text, str(f))
            if problems:
                found[str(f)] = FileScan(None, "; ".join(str(p) for p in problems))
            else:
                found[str(f)] = FileScan(tuple(item.cluster.name for item in loaded))
        return found

    def step(self) -> FleetChanges:
        """Rescan the directory; start and stop loops accordingly."""
        self._reap()
        files = self.scan()
        self._report_files(files)
        running = {name: m.source for name, m in self.members.items()}
        changes = fleet_changes(files, running, set(self.stopping))
        for name in sorted(changes.stop):
            self._stop(name, "its manifest file no longer names it")
        for name, source in sorted(changes.start.items()):
            self._start(name, source)
        if changes.conflicts != self.conflicts:
            for name, paths in changes.conflicts.items():
                log.error(
                    "cluster defined in several files: not started", cluster=name, files=paths
                )
        self.conflicts = changes.conflicts
        return changes

    def _report_files(self, files: Mapping[str, FileScan]) -> None:
        problems = {path: scan.problem or "" for path, scan in files.items() if scan.names is None}
        for path, problem in problems.items():
            if self.file_problems.get(path) != problem:
                log.error("manifest file refused; its clusters go on unchanged", error=problem)
        self.file_problems = problems

    # --- one cluster's loop ---------------------------------------------------------------

    def _start(self, name: str, source: str) -> None:
        member = Member(name, source, started=self.clock())
        member.thread = threading.Thread(
            target=self._loop, args=(member,), name=f"cluster-{name}", daemon=True
        )
        self.members[name] = member
        log.info("cluster loop starting", cluster=name, file=source)
        member.thread.start()

    def _stop(self, name: str, why: str) -> None:
        member = self.members.pop(name)
        member.stop.set()
        self.stopping[name] = member
        log.info("stopping the cluster's loop; the cluster keeps running", cluster=name, why=why)

    def _reap(self) -> None:
        for name, member in list(self.stopping.items()):
            if member.thread is None or not member.thread.is_alive():
                del self.stopping[name]

    def _state_dir(self, name: str) -> Path | None:
        return None if self.state_root is None else self.state_root / name

    def _loop(self, member: Member) -> None:
        structlog.contextvars.bind_contextvars(cluster=member.name)
        while not member.stop.is_set():
            ctl = self._prepare(member)
            if ctl is None:
                member.stop.wait(self.retry_seconds)
                continue
            try:
                ctl.run(member.stop)
            except Exception as exc:  # a loop that dies is restarted, never the others
                log.exception("cluster loop failed; restarting it", error=str(exc))
                member.stop.wait(self.retry_seconds)
            finally:
                ctl.unlock()
        log.info("cluster loop stopped")

    def _prepare(self, member: Member) -> ClusterLoop | None:
        """The cluster's controller with its lock taken, or None (said once) to retry."""
        try:
            ctl = self.make_controller(member.source, member.name, self._state_dir(member.name))
            ctl.prepare(standby=True)  # another operator may lead it: this loop stands by
        except Exception as exc:
            message = str(exc)
            if message != member.error:
                log.error("cluster not started; retrying", error=message)
            member.error = message
            member.beat = self.clock()  # its loop is alive: it retries
            return None
        member.error = None
        self._count_cycles(ctl, member)
        member.ctl = ctl
        log.info("managing cluster", file=member.source, state=str(ctl.state_dir))
        return ctl

    def _count_cycles(self, ctl: ClusterLoop, member: Member) -> None:
        """Every cycle the loop completes (whatever its outcome) is its heartbeat."""
        inner = ctl.cycle

        def cycle(act: bool = True) -> Any:
            try:
                return inner(act)
            finally:
                member.beat = self.clock()

        ctl.cycle = cycle  # type: ignore[method-assign]

    # --- health, systemd and the status endpoint -------------------------------------------

    def health(self, hung_after: float) -> LoopHealth:
        loops = {name: (m.started, m.beat) for name, m in self.members.items()}
        return loop_health(loops, self.clock(), hung_after)

    def notify(self, notifier: Notifier, hung_after: float) -> LoopHealth:
        """READY=1 once every loop has run a first cycle; WATCHDOG=1 only while all are alive."""
        health = self.health(hung_after)
        fields: dict[str, str | int] = {}
        if health.ready and not self.ready_sent:
            fields["READY"] = 1
            self.ready_sent = True
            log.info("every cluster's loop ran its first cycle", clusters=len(self.members))
        elif not self.ready_sent and health.alive:
            fields["EXTEND_TIMEOUT_USEC"] = EXTEND_START_USEC
        hung = tuple(name for name, _ in health.hung)
        if hung != self._hung and hung:
            log.error("a cluster's loop is hung: the systemd watchdog is no longer fed", hung=hung)
        self._hung = hung
        if health.alive:
            fields["WATCHDOG"] = 1
        status = self.status_line(health)
        if status != self._last_status:
            fields["STATUS"] = status
            self._last_status = status
        if fields:
            notifier.send(**fields)
        return health

    def status_line(self, health: LoopHealth) -> str:
        parts = []
        for name, m in sorted(self.members.items()):
            snap = m.ctl.last_cycle if m.ctl else None
            phase = snap.status.get("phase") if snap else ("not started" if m.error else "starting")
            parts.append(f"{name} {phase}")
        hung = [f"{name} hung {since:.0f}s" for name, since in health.hung]
        refused = (
            [f"{len(self.file_problems)} manifest file(s) refused"] if self.file_problems else []
        )
        line = (
            f"{len(self.members)} clusters: " + ", ".join(parts + hung) if parts else "no clusters"
        )
        return "; ".join([line, *refused])

    def snapshot(self) -> Snapshot | None:
        """All clusters as one status (what `run --listen` serves): its phase is Converged
        only when every cluster's is, and its age is the oldest loop's."""
        clusters: dict[str, Any] = {}
        times = []
        for name, m in sorted(self.members.items()):
            snap = m.ctl.last_cycle if m.ctl else None
            if snap is None:
                clusters[name] = {
                    "phase": "NotStarted" if m.error else "Starting",
                    "error": m.error,
                }
                continue
            clusters[name] = dict(snap.status)
            times.append(snap.at)
        if not times:
            return None
        phases = [c.get("phase") for c in clusters.values()]
        phase = "Converged" if all(p == "Converged" for p in phases) else "Progressing"
        status = {"phase": phase, "clusters": clusters, "refusedFiles": dict(self.file_problems)}
        return Snapshot(status, min(times))

    # --- the whole fleet ---------------------------------------------------------------------

    def run(
        self, stop: threading.Event, notifier: Notifier | None = None, hung_after: float = 900.0
    ) -> None:
        notifier = notifier or Notifier(None, None)
        try:
            while not stop.is_set():
                self.step()
                self.notify(notifier, hung_after)
                stop.wait(SCAN_SECONDS)
        finally:
            notifier.send(STOPPING=1)
            self.stop_all()

    def stop_all(self, timeout: float = STOP_SECONDS) -> None:
        for name in list(self.members):
            self._stop(name, "the operator stops")
        deadline = time.monotonic() + timeout
        for member in list(self.stopping.values()):
            if member.thread is not None:
                member.thread.join(max(0.0, deadline - time.monotonic()))
        self._reap()
