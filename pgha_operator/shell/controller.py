"""The loop: load manifest -> observe -> plan -> execute -> status, level-triggered.

Every cycle starts from a fresh observation; file events and timers only wake it. A refused
manifest never changes the cluster: the last accepted one stays in force and the error is
shown in status.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import structlog
import yaml

from pgha_operator.core import conditions as cond
from pgha_operator.core import topology
from pgha_operator.core.actions import Action
from pgha_operator.core.desired import build_desired
from pgha_operator.core.errors import PermanentError
from pgha_operator.core.facts.observed import Observed
from pgha_operator.core.plan import Desired, Plan, plan
from pgha_operator.core.spec import (
    Cluster,
    LoadedCluster,
    ManifestError,
    Problem,
    fixed_field_changes,
    load,
)
from pgha_operator.core.status import build_status
from pgha_operator.shell import reinit_history, teardown
from pgha_operator.shell.down_marks import down_machines
from pgha_operator.shell.execute import Env, execute
from pgha_operator.shell.fencer import Fencer
from pgha_operator.shell.observe import observe
from pgha_operator.shell.providers import make_provider
from pgha_operator.shell.providers.local import default_state_dir
from pgha_operator.shell.secrets_file import load_or_create
from pgha_operator.shell.status_file import write_status
from pgha_operator.shell.status_http import Snapshot

log = structlog.get_logger("pgha-operator")

LAST_APPLIED = "last-applied.yaml"
RESYNC_SECONDS = 2.0  # a converged cluster is re-observed this often
BUSY_SECONDS = 0.5  # after actions: re-observe soon to take the next step


def refuse_fixed_changes(running: Cluster, loaded: LoadedCluster) -> None:
    changes = fixed_field_changes(running, loaded.cluster)
    if changes:
        raise ManifestError([Problem(loaded.source, path, reason) for path, reason in changes])


def load_one(paths: Sequence[str], name: str | None = None) -> LoadedCluster:
    """The one cluster the command is about; several in the files need `--cluster`."""
    loaded = load(paths)
    if name:
        loaded = [item for item in loaded if item.cluster.name == name]
        if not loaded:
            raise PermanentError(f"no cluster named {name!r} in {', '.join(paths)}")
    if len(loaded) > 1:
        names = ", ".join(item.cluster.name for item in loaded)
        raise PermanentError(f"{', '.join(paths)} define clusters {names}: pick one with --cluster")
    return loaded[0]


@dataclass
class CycleReport:
    plan: Plan
    observed: Observed
    decision: str
    phase: str
    converged: bool
    error: str | None
    permanent: bool
    status: dict[str, Any]


class Controller:
    def __init__(
        self,
        paths: Sequence[str],
        state_dir: Path | None = None,
        cluster_name: str | None = None,
        progress: Callable[[Action], None] | None = None,
        fall_back_to_last_applied: bool = False,
    ) -> None:
        self.paths = list(paths)
        self.cluster_name = cluster_name
        self.progress = progress
        self.manifest_error: str | None = None
        try:
            self.loaded = load_one(self.paths, cluster_name)
        except ManifestError as exc:
            # `status` must still work while a refused edit sits in the manifest.
            last = state_dir / LAST_APPLIED if state_dir else None
            if not (fall_back_to_last_applied and last and last.exists()):
                raise
            self.loaded = load_one([str(last)], cluster_name)
            self.manifest_error = str(exc)
        self.cluster: Cluster = self.loaded.cluster
        self.state_dir = state_dir or default_state_dir(self.cluster.name)
        self._hold_fixed_fields(fall_back_to_last_applied)
        self.provider = make_provider(self.cluster, self.state_dir)
        self.user = self.provider.service_user
        self.binaries = self.provider.binaries
        self.events: deque[dict[str, str]] = deque(maxlen=20)
        self.generation = 0
        self._spec_hash = ""
        self._lock_file: IO[str] | None = None
        self.fencer: Fencer | None = None  # the fast failover path; only `run` probes
        self.last_cycle: Snapshot | None = None  # what `run --listen` serves
        self._accept(self.cluster)

    # --- manifest ---------------------------------------------------------------------------

    def _hold_fixed_fields(self, fall_back_to_last_applied: bool) -> None:
        """A manifest that changes a creation-time field of the running cluster is refused."""
        last = self.state_dir / LAST_APPLIED
        if self.manifest_error or not last.exists():
            return
        try:
            running = load_one([str(last)], self.cluster.name)
        except (ManifestError, PermanentError):
            return  # written by another version of the operator: nothing to hold it to
        try:
            refuse_fixed_changes(running.cluster, self.loaded)
        except ManifestError as exc:
            if not fall_back_to_last_applied:
                raise
            self.loaded, self.cluster, self.manifest_error = running, running.cluster, str(exc)

    def _accept(self, cluster: Cluster) -> None:
        spec_hash = hashlib.sha256(cluster.model_dump_json().encode()).hexdigest()
        if spec_hash != self._spec_hash:
            self.generation += 1
            self._spec_hash = spec_hash
        self.cluster = cluster

    def reload_manifest(self) -> None:
        """Re-read the manifest; keep the last good one when the new one is refused."""
        try:
            loaded = load_one(self.paths, self.cluster_name or self.cluster.name)
            if loaded.cluster.name != self.cluster.name:
                raise PermanentError(
                    f"the manifest now names cluster {loaded.cluster.name!r}; this operator "
                    f"manages {self.cluster.name!r}"
                )
            refuse_fixed_changes(self.cluster, loaded)
        except (ManifestError, PermanentError) as exc:
            message = str(exc)
            if message != self.manifest_error:
                log.error(
                    "manifest refused; the last accepted manifest stays in force", error=message
                )
            self.manifest_error = message
            return
        if self.manifest_error:
            log.info("manifest accepted again")
        self.manifest_error = None
        self._accept(loaded.cluster)

    # --- state --------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Checks before anything starts; takes the operator lock of this cluster."""
        self.provider.preflight()
        self.lock()

    def lock(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fh = open(self.state_dir / "operator.lock", "a+")  # noqa: SIM115 - held for our lifetime
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise PermanentError(
                f"another operator ({holder}) already manages cluster {self.cluster.name} "
                f"from {self.state_dir}; stop it first"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        self._lock_file = fh

    def unlock(self) -> None:
        if self._lock_file:
            self._lock_file.close()
            self._lock_file = None

    def desired(self) -> Desired:
        layouts = {
            m.name: self.provider.layout(m.name) for m in topology.build(self.cluster).machines
        }
        desired, _ = build_desired(
            self.cluster,
            layouts,
            load_or_create(self.state_dir),
            self.binaries,
            self.user,
            self.provider.service_manager,
        )
        return desired

    def env(self, desired: Desired) -> Env:
        return Env(
            self.cluster,
            desired.topology,
            self.provider,
            self.binaries,
            secrets=load_or_create(self.state_dir),
            check_ports=self.provider.kind == "local",  # only local machines share this host
        )

    # --- one cycle ----------------------------------------------------------------------------

    def observe(self, desired: Desired | None = None) -> tuple[Desired, Observed]:
        desired = desired or self.desired()
        observed = observe(
            desired,
            self.provider,
            load_or_create(self.state_dir),
            reinits=reinit_history.load(self.state_dir),
        )
        # Read after the services: a drill marks a machine down before it kills it.
        held = self.fencer.holding() if self.fencer else frozenset()
        return desired, replace(observed, down=down_machines(self.state_dir) | held)

    def cycle(self, act: bool = True) -> CycleReport:
        desired, observed = self.observe()
        the_plan = plan(desired, observed)
        error = None
        permanent = False
        if act:
            self._save_last_applied()
        done: list[Action] = []
        if act and the_plan.actions:
            outcome = execute(the_plan.actions, self.env(desired), self.progress)
            done = outcome.done
            for action in outcome.done:
                self._event(action.describe)
            if outcome.error:
                error = outcome.error
                permanent = isinstance(outcome.exception, PermanentError)
        if act:  # count reinitialisations just done; forget members healthy again
            reinit_history.update(self.state_dir, observed, done, time.time())
        if self.fencer:
            self.fencer.update(desired, observed)
        conditions = cond.assess(desired, observed)
        # A temporary error (retried next cycle) is progress, not failure.
        phase = cond.phase(conditions, the_plan, error if permanent else None)
        decision = the_plan.decision
        if error:
            decision = f"failed: {error}"
        elif the_plan.empty and phase != "Converged" and not the_plan.blocked:
            # (blocked: the plan's own decision, e.g. TwoPrimaries, is the one to show)
            waiting = next(c for c in conditions if not c.status)
            decision = f"waiting: {waiting.type} {waiting.reason}"
        converged = phase == "Converged"
        status = build_status(
            desired,
            observed,
            conditions,
            phase,
            decision,
            extra={
                "observedGeneration": self.generation,
                "manifestError": self.manifest_error,
                "events": list(self.events),
                "updatedAt": _now(),
                "stateDir": str(self.state_dir),
                "fencing": self._fencing_status(),
            },
        )
        if act:  # only the operator that acts owns status.json; `status` just reads
            write_status(self.state_dir, status)
        return CycleReport(the_plan, observed, decision, phase, converged, error, permanent, status)

    def _fencing_status(self) -> dict[str, Any]:
        spec = self.cluster.spec.failover
        return {
            "mode": spec.fencing,
            "available": self.provider.can_fence,
            "watching": self.fencer.leader if self.fencer else None,
            "lastDecision": self.fencer.last_decision if self.fencer else None,
            "note": None
            if self.provider.can_fence
            else "this provider cannot power machines off: failover waits for the leader lease",
        }

    def _save_last_applied(self) -> None:
        """The manifest in force, so `status` can show the cluster while an edit is refused."""
        text = yaml.safe_dump(
            self.cluster.model_dump(mode="json", by_alias=True, exclude_none=True), sort_keys=False
        )
        path = self.state_dir / LAST_APPLIED
        if not path.exists() or path.read_text() != text:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            os.replace(tmp, path)

    def _event(self, message: str) -> None:
        self.events.append({"time": _now(), "message": message})

    def destroy(self) -> list[str]:
        """Stop every service on its machine (load balancers first, etcd last), remove the
        machines (waiting until they are gone), then the state dir: shell/teardown.py."""
        removed = teardown.teardown(self.provider)
        self.unlock()
        teardown.remove_state_dir(self.state_dir)
        return removed

    # --- loops --------------------------------------------------------------------------------

    def apply(self, timeout: float) -> CycleReport:
        """Reconcile until converged or the timeout; stops early on a permanent error."""
        deadline = time.monotonic() + timeout
        last_decision = ""
        acted = False
        confirmed = False
        while True:
            report = self.cycle()
            acted = acted or bool(report.plan.actions)
            if report.decision != last_decision:
                log.info("cycle", decision=report.decision, phase=report.phase)
                last_decision = report.decision
            if report.permanent or time.monotonic() >= deadline:
                return report
            if report.converged:
                # Patroni applies a DCS change (and flags pending restarts) on its next loop:
                # after acting, converged must still hold one loop_wait later.
                if not acted or confirmed:
                    return report
                confirmed = True
                time.sleep(self.cluster.timing.loop_wait + 1.0)
                continue
            confirmed = False
            time.sleep(BUSY_SECONDS if report.plan.actions else 1.0)

    def run(self, stop: threading.Event) -> None:
        """Forever: resync every few seconds, wake at once when a manifest file changes."""
        wake = threading.Event()
        self.fencer = Fencer(self.desired(), self.provider)
        watcher = threading.Thread(target=self._watch, args=(wake, stop), daemon=True)
        watcher.start()
        last_decision = ""
        while not stop.is_set():
            self.reload_manifest()
            try:
                report = self.cycle()
            except Exception as exc:  # the loop must survive anything one cycle throws
                log.exception("cycle failed", error=str(exc))
                stop.wait(RESYNC_SECONDS)
                continue
            self.last_cycle = Snapshot(report.status, time.monotonic())
            if report.decision != last_decision:
                log.info("cycle", decision=report.decision, phase=report.phase)
                last_decision = report.decision
            delay = BUSY_SECONDS if report.plan.actions else RESYNC_SECONDS
            self._pause(delay, wake, stop)
            wake.clear()

    def _pause(self, delay: float, wake: threading.Event, stop: threading.Event) -> None:
        """Wait for the next cycle, probing the primary meanwhile (the fast failover path)."""
        deadline = time.monotonic() + delay
        while not (stop.is_set() or wake.is_set()):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if self.fencer is None:
                wake.wait(left)
                continue
            decision = self.fencer.probe()
            if decision is not None:
                self._event(decision.reason)
                if decision.fence:
                    return  # re-observe at once: the old primary's machine is down
            wake.wait(min(self.fencer.interval, left))

    def _watch(self, wake: threading.Event, stop: threading.Event) -> None:
        from watchfiles import watch

        # Watch the directories: editors save by renaming a new file over the old one.
        targets = {
            str(Path(p).resolve() if Path(p).is_dir() else Path(p).resolve().parent)
            for p in self.paths
        }
        wanted = {str(Path(p).resolve()) for p in self.paths}
        for changes in watch(*targets, stop_event=stop, debounce=200, step=50):
            if any(path in wanted or str(Path(path).parent) in wanted for _, path in changes):
                wake.set()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def dump_json(data: Any) -> str:
    return json.dumps(data, indent=2, default=str)
