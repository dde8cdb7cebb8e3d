"""A switchover on request: under the switchover lock, through Patroni, until HAProxy's
primary port routes to the new primary.

Locking: `switchover.lock` for the whole command, so a second switchover is refused at
once. When no operator runs, the command also holds `operator.lock` (an `apply` or `run`
started meanwhile waits its turn with a clear error). When a `run` operator holds it, the
switchover goes ahead beside it: that operator executes no switchover of its own while
the lock is held (controller._act), and its other work is safe during a switchover.

The key handover (shell/switchover_assist.py) needs a lease guard. With no operator
running, the command holds the lease itself. Beside a `run` operator it borrows that
operator's: the guard is its leader key as read from etcd, accepted only when the key names
the process that holds this state dir's operator lock on this host (the operator that
stands aside for the switchover). Its release then succeeds only while that operator still
leads; beside a standby operator (another host leads) it is Patroni's own path.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from pgha_operator.core.actions import Action
from pgha_operator.core.conditions import PRIMARY_BACKEND
from pgha_operator.core.errors import OperatorError, PermanentError
from pgha_operator.core.leadership import LeaseGuard, leader_key
from pgha_operator.core.switchover import requested_switchover
from pgha_operator.shell.clients import EtcdLeaseApi
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
    env = ctl.env(desired, secrets)
    if operator is not None:
        urls = desired.topology.etcd_client_urls
        borrowed = BorrowedLease(ctl.clients.etcd_lease(urls, 1.0), ctl.cluster.name, operator)
        env = replace(env, lease=borrowed)
    started = time.monotonic()
    outcome = execute([action], env, progress)
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


class BorrowedLease:
    """The lease of the `run` operator this command runs beside (`holder`: its operator
    lock's "pid N (run)"), as a guard for one etcd transaction."""

    def __init__(self, etcd: EtcdLeaseApi, cluster: str, holder: str) -> None:
        self.etcd = etcd
        self.key = leader_key(cluster)
        match = re.match(r"pid (\d+) ", holder)
        # operator_identity(): "<host>/pid <pid>/<tag>"
        self.prefix = f"{socket.gethostname()}/pid {match.group(1)}/" if match else None

    def guard(self) -> LeaseGuard | None:
        if self.prefix is None:
            return None
        try:
            held = self.etcd.holder(self.key)
        except OperatorError:
            return None
        if held is None or not held.value.startswith(self.prefix):
            return None  # that operator does not lead (a standby), or no operator does
        return LeaseGuard(self.key, held.value, held.create_revision)
