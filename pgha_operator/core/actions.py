"""Action types: frozen data saying what to do. `plan` returns them, `execute` performs them.

Every action carries a one-line description (for logs, `plan` and status) and whether the
loop must re-observe after it (`barrier`): membership changes and service starts whose
effect the next step depends on.
"""

from __future__ import annotations

from dataclasses import dataclass

from pgha_operator.core.backup_actions import BackupAction
from pgha_operator.core.catalog_actions import CatalogAction


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
    """Make a running service read its changed files. They were written with a pending mark
    (plan.PICKUP_PENDING); `then_write` are the same files as rendered, written right after
    the reload: until then the file differs, so a lost reload is planned again."""

    machine: str
    service: str
    reason: str
    then_write: tuple[WriteFile, ...] = ()
    barrier: bool = False

    @property
    def describe(self) -> str:
        return f"reload {self.service} on {self.machine} ({self.reason})"


@dataclass(frozen=True)
class RestartService:
    """As ReloadService, for a service that must restart to read them (etcd's config, a
    service definition); one per cycle (rule 3)."""

    machine: str
    service: str
    reason: str
    then_write: tuple[WriteFile, ...] = ()
    barrier: bool = True

    @property
    def describe(self) -> str:
        return f"restart {self.service} on {self.machine} ({self.reason})"


@dataclass(frozen=True)
class CreateRole:
    """A login role the operator owns (its password is a generated secret), created on the
    primary at host:port (as Patroni's /cluster lists it); the role replicates from there."""

    role: str
    host: str
    port: int
    barrier: bool = False

    @property
    def describe(self) -> str:
        return f"create role {self.role} on the primary"


@dataclass(frozen=True)
class CreateDatabase:
    """A database the operator owns the existence of (the app's), created on the primary at
    host:port, owned by `owner` (a role made before it)."""

    name: str
    owner: str
    host: str
    port: int
    barrier: bool = False

    @property
    def describe(self) -> str:
        return f"create database {self.name} (owner {self.owner}) on the primary"


@dataclass(frozen=True)
class StopService:
    machine: str
    service: str
    reason: str
    barrier: bool = True

    @property
    def describe(self) -> str:
        return f"stop {self.service} on {self.machine} ({self.reason})"


@dataclass(frozen=True)
class DestroyMachine:
    machine: str
    barrier: bool = True

    @property
    def describe(self) -> str:
        return f"destroy machine {self.machine} (no longer in the manifest)"


@dataclass(frozen=True)
class RemovePath:
    machine: str
    path: str
    reason: str
    barrier: bool = False

    @property
    def describe(self) -> str:
        return f"remove {self.machine}:{self.path} ({self.reason})"


@dataclass(frozen=True)
class AddEtcdMember:
    """Rule 2: a new member joins as a learner, one at a time."""

    machine: str
    peer_url: str
    barrier: bool = True

    @property
    def describe(self) -> str:
        return f"add etcd member {self.machine} ({self.peer_url}) as a learner"


@dataclass(frozen=True)
class StartEtcdLearner:
    """First start of a member added to a running cluster: its config names the membership it
    joins (initial-cluster-state existing)."""

    machine: str
    path: str
    content: str
    mode: int
    owner: str | None
    barrier: bool = True

    @property
    def describe(self) -> str:
        return f"start etcd on {self.machine} to join the existing cluster"


@dataclass(frozen=True)
class PromoteEtcdMember:
    machine: str
    member_id: str
    barrier: bool = True

    @property
    def describe(self) -> str:
        return f"promote etcd learner {self.machine} to a voting member"


@dataclass(frozen=True)
class RemoveEtcdMember:
    machine: str
    member_id: str
    reason: str
    barrier: bool = True

    @property
    def describe(self) -> str:
        return f"remove etcd member {self.machine} ({self.reason})"


@dataclass(frozen=True)
class PatchPatroniConfig:
    """Rule 7: DCS settings change through PATCH /config, never by rewriting patroni.yml.
    Sent to the leader (the key holder as observed), whose view of the DCS is the freshest."""

    leader: str
    patch_json: str  # the JSON body, keys sorted (a frozen, comparable value)
    keys: tuple[str, ...]  # what changes, for the description
    barrier: bool = True

    @property
    def describe(self) -> str:
        return f"PATCH Patroni /config: {', '.join(self.keys)}"


@dataclass(frozen=True)
class RestartPostgres:
    """A rolling restart step through Patroni (POST /restart), never two at once (rule 3)."""

    machine: str
    reason: str
    barrier: bool = True

    @property
    def describe(self) -> str:
        return f"restart PostgreSQL on {self.machine} ({self.reason})"


@dataclass(frozen=True)
class Reinitialize:
    """A replica that cannot rejoin (e.g. a timeline history mismatch) is cloned afresh from
    the primary through Patroni (POST /reinitialize)."""

    machine: str
    reason: str
    barrier: bool = True

    @property
    def describe(self) -> str:
        return f"reinitialize {self.machine} from the primary ({self.reason})"


@dataclass(frozen=True)
class Switchover:
    """Rules 3 and 4: the primary is restarted or removed only after a switchover."""

    leader: str
    candidate: str
    reason: str
    barrier: bool = True

    @property
    def describe(self) -> str:
        return f"switch over {self.leader} -> {self.candidate} {self.reason}"


@dataclass(frozen=True)
class WaitFor:
    """Nothing to do until a condition holds; ends the cycle (e.g. etcd quorum)."""

    what: str
    barrier: bool = True

    @property
    def describe(self) -> str:
        return f"wait for {self.what}"


Action = (
    CreateMachine
    | WriteFile
    | StartService
    | ReloadService
    | RestartService
    | CreateRole
    | CreateDatabase
    | CatalogAction
    | BackupAction
    | WaitFor
)
