"""A switchover on request: under the switchover lock, through Patroni, until HAProxy's
primary port routes to the new primary.

Locking: `switchover.lock` for the whole command, so a second switchover is refused at
once. When no operator runs, the command also holds `operator.lock` (an `apply` or `run`
started meanwhile waits its turn with a clear error). When a `run` operator holds it, the
switchover goes ahead beside it: that operator executes no switchover of its own while
the lock is held (controller._act), and its other work is safe during a switchover.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from pgha_operator.core.actions import Action
from pgha_operator.core.conditions import PRIMARY_BACKEND
from pgha_operator.core.errors import OperatorError, PermanentError
from pgha_operator.core.switchover import requested_switchover
from pgha_operator.shell.controller import Controller
from pgha_operator.shell.execute import execute
from pgha_operator.shell.state import LockHeld


@dataclass(frozen=True)
class SwitchoverDone:
    candidate: str
    seconds: float
    operator: str | None  # the running operator the switchover went ahead beside


def switch_over(
    ctl: Controller,
    to: str | None,
    timeout: float,
    progress: Callable[[Action], None] | None = None,
) -> SwitchoverDone:
    state = ctl.state
    secrets = state.secrets()
    if secrets is None:
        raise OperatorError(f"cluster {ctl.cluster.name} has no secrets yet: run apply first")
    try:
        state.switchover_lock.acquire("switchover")
    except LockHeld as exc:
        raise PermanentError(
            f"another switchover ({exc.holder}) is in progress on cluster {ctl.cluster.name}; "
            "wait for it to finish"
        ) from None
    operator = None
    try:
        try:
            ctl.lock("switchover")
        except PermanentError:
            operator = state.operator_running() or "another operator"
        return _switch(ctl, to, timeout, progress, operator)
    finally:
        ctl.unlock()
        state.switchover_lock.release()


def _switch(
    ctl: Controller,
    to: str | None,
    timeout: float,
    progress: Callable[[Action], None] | None,
    operator: str | None,
) -> SwitchoverDone:
    secrets = ctl.secrets()
    desired, observed = ctl.observe(secrets=secrets)
    action = requested_switchover(desired, observed, to)
    started = time.monotonic()
    outcome = execute([action], ctl.env(desired, secrets), progress)
    if outcome.error:
        raise OperatorError(outcome.error)
    deadline = started + timeout
    while time.monotonic() < deadline:
        _, now = ctl.observe(desired, secrets)
        routed = [f.up(PRIMARY_BACKEND) for f in now.haproxy.values() if f.reachable]
        if all(up == {action.candidate} for up in routed):
            return SwitchoverDone(action.candidate, time.monotonic() - started, operator)
        time.sleep(0.2)
    raise OperatorError(f"{action.candidate} is primary but HAProxy does not route to it yet")
