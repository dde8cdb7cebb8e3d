"""`rotate passwords`: new passwords for the cluster's logins, in the order core/rotation.py
gives, executed step by step.

Locking, like a switchover's: `rotation.lock` for the whole command (a second rotation is
refused at once). The command saves the new passwords itself; the ALTER ROLE and the
configs are done by an acting operator cycle (shell/role_passwords.py), either this
command's own, holding `operator.lock` when no operator runs (an `apply` or `run` started
meanwhile is refused until it ends), or the running `run` operator's, which this command
then waits for. Either way one process acts on the cluster, and a rotation interrupted
anywhere is finished by the next acting cycle.
"""

from __future__ import annotations

import secrets as pysecrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pgha_operator.core.errors import OperatorError, PermanentError
from pgha_operator.core.render import SUPERUSER, Secrets
from pgha_operator.core.rotation import (
    Login,
    Step,
    password_of,
    previous_of,
    rotated,
    rotation_steps,
    select_logins,
)
from pgha_operator.core.spec.catalog import declared_logins
from pgha_operator.shell.clients import ComponentError
from pgha_operator.shell.controller import Controller
from pgha_operator.shell.state import LockHeld

POLL_SECONDS = 1.0
PASSWORD_BYTES = 24  # token_urlsafe: 32 characters, like the passwords made at creation

Progress = Callable[[str], None]


@dataclass(frozen=True)
class RotationDone:
    roles: tuple[str, ...]
    seconds: float
    operator: str | None  # the running operator that did the cluster's part, if any


def plan_rotation(names: Iterable[str] | None, declared: Iterable[str] = ()) -> tuple[Step, ...]:
    return rotation_steps(select_logins(names, declared))


def rotate_passwords(
    ctl: Controller, names: Iterable[str] | None, timeout: float, progress: Progress
) -> RotationDone:
    logins = select_logins(names, declared_logins(ctl.cluster.spec.postgres.roles))
    state = ctl.state
    if state.secrets() is None:
        raise OperatorError(f"cluster {ctl.cluster.name} has no secrets yet: run apply first")
    try:
        state.rotation_lock.acquire("rotate passwords")
    except LockHeld as exc:
        raise PermanentError(
            f"another rotation ({exc.holder}) is in progress on cluster {ctl.cluster.name}; "
            "wait for it to finish"
        ) from None
    started = time.monotonic()
    converge = Converger(ctl, started + timeout)
    try:
        if state.pending_rotation() is not None:
            progress("an interrupted rotation is finished first")
            converge.settled()
        for step in rotation_steps(logins):
            progress(step.describe)
            _STEPS[step.kind](ctl, converge, logins)
        return RotationDone(
            tuple(x.name for x in logins), time.monotonic() - started, converge.operator
        )
    finally:
        ctl.unlock()
        state.rotation_lock.release()


class Converger:
    """Lets an acting cycle do the cluster's part: this process's own while it holds the
    operator lock, else the running operator's (taken over if that operator stops)."""

    def __init__(self, ctl: Controller, deadline: float) -> None:
        self.ctl = ctl
        self.deadline = deadline
        self.operator: str | None = None

    def _own(self) -> bool:
        try:
            self.ctl.lock("rotate passwords")
        except PermanentError:
            self.operator = self.ctl.state.operator_running() or "another operator"
            return False
        return True

    def _wait(self, what: str, done: Callable[[], bool]) -> None:
        while not done():
            if time.monotonic() >= self.deadline:
                raise OperatorError(
                    f"timed out waiting for {what} ({self._why()}); the new passwords are "
                    "saved, and the next `apply`, the running `run` or a re-run of "
                    "`rotate passwords` finishes the rotation"
                )
            time.sleep(POLL_SECONDS)

    def _why(self) -> str:
        report = self.ctl.cycle(act=False)
        return f"{report.phase}: {report.decision}"

    def settled(self) -> None:
        """Every pending ALTER ROLE done (rotation.yaml gone)."""
        self._wait("ALTER ROLE on the primary", lambda: self._cycle() and self._no_pending())

    def converged(self) -> None:
        """The configs carry the new passwords everywhere, reloaded; the cluster Converged."""
        self._wait("the cluster to converge", lambda: self._cycle() and self._converged())

    def _cycle(self) -> bool:
        """One acting cycle of our own when no operator runs; always True (a step to poll)."""
        if self._own():
            self.ctl.cycle()
        return True

    def _no_pending(self) -> bool:
        return self.ctl.state.pending_rotation() is None

    def _converged(self) -> bool:
        if self.ctl.state.operator_lock.held:
            remaining = max(1.0, self.deadline - time.monotonic())
            return self.ctl.apply(remaining).converged
        return self.ctl.cycle(act=False).converged


def _save(ctl: Controller, converge: Converger, logins: tuple[Login, ...]) -> None:
    saved = ctl.state.secrets()
    assert saved is not None  # checked before the lock was taken
    new = {x.field: pysecrets.token_urlsafe(PASSWORD_BYTES) for x in logins}
    ctl.state.begin_rotation(rotated(saved, new), previous_of(saved, logins))


def _alter(ctl: Controller, converge: Converger, logins: tuple[Login, ...]) -> None:
    converge.settled()


def _reload(ctl: Controller, converge: Converger, logins: tuple[Login, ...]) -> None:
    converge.converged()


def _verify(ctl: Controller, converge: Converger, logins: tuple[Login, ...]) -> None:
    """The cluster converged with the new passwords, and every rotated role that exists
    logs in on the primary with its new password."""
    converge.converged()
    secrets = ctl.state.secrets()
    assert secrets is not None
    _, observed = ctl.observe(secrets=secrets)
    leader = observed.patroni.leader
    if leader is None:
        raise OperatorError("no primary to verify the new passwords on")
    admin = ctl.clients.postgres(leader.host, leader.port, SUPERUSER, secrets.superuser_password)
    database = [x for x in logins if x.database]
    try:
        existing = admin.existing_roles([x.name for x in database])
        for login in (x for x in database if x.name in existing):
            _login(ctl, leader.host, leader.port, login, secrets)
    except ComponentError as exc:
        raise OperatorError(f"a new password is not accepted: {exc}") from None


def _login(ctl: Controller, host: str, port: int, login: Login, secrets: Secrets) -> None:
    password = password_of(secrets, login.field)
    ctl.clients.postgres(host, port, login.name, password).existing_roles([login.name])


_STEPS: dict[str, Callable[[Controller, Converger, tuple[Login, ...]], None]] = {
    "save": _save,
    "alter": _alter,
    "reload": _reload,
    "verify": _verify,
}
