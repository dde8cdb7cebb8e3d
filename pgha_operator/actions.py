"""Action types: frozen data saying what to do. `plan` returns them, `execute` performs them.

Every action carries a one-line description (for logs, `plan` and status) and whether the
loop must re-observe after it (`barrier`): membership changes and service starts whose
effect the next step depends on.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CreateMachine:
    machine: str
    barrier: bool = False

    @property
    def describe(self) -> str:
        return f"create machine {self.machine}"


@dataclass(frozen=True)
class WriteFile:
    machine: str
    path: str
    content: str
    mode: int
    owner: str | None
    reason: str  # "missing" or "changed"
    barrier: bool = False

    @property
    def describe(self) -> str:
        return f"write {self.machine}:{self.path} ({self.reason})"


@dataclass(frozen=True)
class StartService:
    machine: str
    service: str
    barrier: bool = False

    @property
    def describe(self) -> str:
        return f"start {self.service} on {self.machine}"


@dataclass(frozen=True)
class ReloadService:
    machine: str
    service: str
    reason: str

    barrier: bool = False

    @property
    def describe(self) -> str:
        return f"reload {self.service} on {self.machine} ({self.reason})"


@dataclass(frozen=True)
class RestartService:
    machine: str
    service: str
    reason: str
    barrier: bool = True

    @property
    def describe(self) -> str:
        return f"restart {self.service} on {self.machine} ({self.reason})"


@dataclass(frozen=True)
class CreateRole:
    """A login role the operator owns (its password is a generated secret)."""

    role: str
    barrier: bool = False

    @property
    def describe(self) -> str:
        return f"create role {self.role} on the primary"


@dataclass(frozen=True)
class WaitFor:
    """Nothing to do until a condition holds; ends the cycle (e.g. etcd quorum)."""

    what: str
    barrier: bool = True

    @property
    def describe(self) -> str:
        return f"wait for {self.what}"


Action = (
    CreateMachine | WriteFile | StartService | ReloadService | RestartService | CreateRole | WaitFor
)
