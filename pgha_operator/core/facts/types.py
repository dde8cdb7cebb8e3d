"""Immutable facts about etcd, Patroni and HAProxy, as observed in one cycle.

Pure data: no I/O here. Parsers (observe/etcd.py, patroni.py, haproxy.py) build these
from real outputs; `plan` compares them with the desired state. Everything is frozen and
hashable (tuples, frozensets, FrozenDict), so a snapshot cannot change under the planner.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

# Patroni role names as the operator uses them (see normalize_role in observe/patroni.py).
PRIMARY = "primary"
REPLICA = "replica"
SYNC_STANDBY = "sync_standby"
QUORUM_STANDBY = "quorum_standby"
STANDBY_LEADER = "standby_leader"
LEADER_ROLES = frozenset({PRIMARY, STANDBY_LEADER})


def freeze(value: Any) -> Any:
    """Deep-freeze JSON-like data: dicts -> FrozenDict, lists -> tuples, sets -> frozensets."""
    if isinstance(value, FrozenDict):
        return value
    if isinstance(value, Mapping):
        return FrozenDict(value)
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    if isinstance(value, set | frozenset):
        return frozenset(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """The inverse of freeze: plain dicts and lists (for JSON output and deep comparisons)."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [thaw(v) for v in value]
    if isinstance(value, frozenset | set):
        return sorted(thaw(v) for v in value)
    return value


class FrozenDict(Mapping[str, Any]):
    """A read-only, hashable, deeply frozen mapping (nested lists become tuples).

    Compares equal to a plain dict with the same content, except that nested lists are
    tuples here: compare `thaw(x)` with JSON-like data when lists may be involved.
    """

    __slots__ = ("_data", "_hash")

    def __init__(self, data: Mapping[str, Any] | Iterable[tuple[str, Any]] = ()) -> None:
        self._data: dict[str, Any] = {k: freeze(v) for k, v in dict(data).items()}
        self._hash: int | None = None

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._data.items()))
        return self._hash

    def __repr__(self) -> str:
        return f"FrozenDict({self._data!r})"

    def thaw(self) -> dict[str, Any]:
        return thaw(self)


EMPTY = FrozenDict()


def _set(obj: object, name: str, value: Any) -> None:
    # Normalise fields of a frozen dataclass in __post_init__ (callers may pass lists/sets).
    object.__setattr__(obj, name, value)


# --------------------------------------------------------------------------- etcd


@dataclass(frozen=True)
class EtcdMember:
    """One entry of etcd's member list.

    `id` is etcd's uint64 member id as the decimal string the /v3 gateway returns (etcdctl
    prints the same id in hex). A member added but not started yet has `name == ""` and no
    client URLs: etcd only learns them when the member first joins.
    """

    id: str
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    is_learner: bool = False

    def __post_init__(self) -> None:
        _set(self, "peer_urls", tuple(self.peer_urls))
        _set(self, "client_urls", tuple(self.client_urls))

    @property
    def started(self) -> bool:
        return bool(self.name)


@dataclass(frozen=True)
class EtcdEndpointStatus:
    """`POST /v3/maintenance/status` of one endpoint."""

    member_id: str
    leader_id: str | None  # None when the endpoint sees no leader (no quorum)
    is_learner: bool
    version: str
    raft_term: int | None
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class EtcdFacts:
    reachable: bool
    members: tuple[EtcdMember, ...] = ()
    healthy: frozenset[str] = frozenset()  # names whose client URL answered /health true
    leader_id: str | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        _set(self, "members", tuple(self.members))
        _set(self, "healthy", frozenset(self.healthy))

    def member(self, name: str) -> EtcdMember | None:
        return next((m for m in self.members if m.name == name), None)

    def member_by_id(self, member_id: str) -> EtcdMember | None:
        return next((m for m in self.members if m.id == member_id), None)

    def member_by_peer_url(self, peer_url: str) -> EtcdMember | None:
        # The only way to recognise a member that was added but never started (no name).
        return next((m for m in self.members if peer_url in m.peer_urls), None)

    @property
    def voters(self) -> tuple[EtcdMember, ...]:
        return tuple(m for m in self.members if not m.is_learner)

    @property
    def learners(self) -> tuple[EtcdMember, ...]:
        return tuple(m for m in self.members if m.is_learner)

    @property
    def leader(self) -> EtcdMember | None:
        return self.member_by_id(self.leader_id) if self.leader_id else None


# --------------------------------------------------------------------------- Patroni


@dataclass(frozen=True)
class PatroniMember:
    """One member of Patroni's `GET /cluster`.

    - role: "primary" | "replica" | "sync_standby" | "quorum_standby" | "standby_leader"
      (Patroni says "leader"; it is normalised to "primary").
    - state: the leader's PostgreSQL state ("running", "stopped", "starting", ...); for
      the others Patroni reports the replication state when it has one ("streaming",
      "in archive recovery") and the PostgreSQL state otherwise ("stopped" ...).
    - lag_bytes: Patroni's "lag": bytes between the leader's last LSN as published in the
      DCS (refreshed every loop_wait) and this member's LSN; None for the leader and
      when Patroni says "unknown" (e.g. a stopped replica).
    - api_url: the REST base URL ("http://host:8008"; Patroni's "/patroni" suffix removed).
    """

    name: str
    host: str
    port: int
    api_url: str
    role: str
    state: str
    timeline: int | None = None
    lag_bytes: int | None = None
    pending_restart: bool = False

    @property
    def is_leader(self) -> bool:
        return self.role in LEADER_ROLES


@dataclass(frozen=True)
class PatroniNodeStatus:
    """`GET /patroni` of one node: what that node says about itself, live (not from DCS)."""

    name: str
    role: str  # normalised like PatroniMember.role ("primary", "replica", "standby_leader")
    state: str
    timeline: int | None = None
    pending_restart: bool = False
    sync_standby: bool = False
    replication_state: str | None = None
    dcs_last_seen: int | None = None  # unix time of the node's last successful DCS contact


@dataclass(frozen=True)
class PatroniFacts:
    """What Patroni says about the cluster.

    reachable: both the cluster view (GET /cluster) and the DCS configuration (GET /config)
    were read from some node. `members` and `primaries` are filled whenever they could be
    read, even when `reachable` is False; `error` says what failed.
    primaries: names of nodes that answered GET /primary with 200, each asked directly.
    This is the live truth; /cluster comes from the answering node's cached DCS view and
    can be stale (it kept naming a demoted leader while etcd had no quorum).
    no_dcs_config: GET /config answered 502: Patroni has no cluster configuration in etcd
    yet, as while the first member bootstraps the cluster.
    """

    reachable: bool
    members: tuple[PatroniMember, ...] = ()
    dynamic_config: Mapping[str, Any] = EMPTY
    primaries: frozenset[str] = frozenset()
    error: str | None = None
    no_dcs_config: bool = False

    def __post_init__(self) -> None:
        _set(self, "members", tuple(self.members))
        _set(self, "primaries", frozenset(self.primaries))
        if not isinstance(self.dynamic_config, FrozenDict):
            _set(self, "dynamic_config", FrozenDict(self.dynamic_config))

    @property
    def leader(self) -> PatroniMember | None:
        return next((m for m in self.members if m.is_leader), None)

    @property
    def replicas(self) -> tuple[PatroniMember, ...]:
        return tuple(m for m in self.members if not m.is_leader)

    def member(self, name: str) -> PatroniMember | None:
        return next((m for m in self.members if m.name == name), None)


# --------------------------------------------------------------------------- HAProxy


@dataclass(frozen=True)
class HaproxyServer:
    """One server row of HAProxy's stats CSV.

    status is HAProxy's text as is: "UP", "DOWN", "MAINT", "no check", "DRAIN", and while
    a check streak is in progress "UP 2/3" (still up, failing) or "DOWN 1/2" (still down,
    recovering).
    """

    backend: str
    server: str
    status: str

    @property
    def is_up(self) -> bool:
        # "no check" servers receive traffic as if they were up.
        return self.status.startswith("UP") or self.status == "no check"


@dataclass(frozen=True)
class HaproxyFacts:
    reachable: bool
    servers: tuple[HaproxyServer, ...] = ()
    error: str | None = None

    def __post_init__(self) -> None:
        _set(self, "servers", tuple(self.servers))

    def server(self, backend: str, server: str) -> HaproxyServer | None:
        return next((s for s in self.servers if s.backend == backend and s.server == server), None)

    def up(self, backend: str) -> frozenset[str]:
        return frozenset(s.server for s in self.servers if s.backend == backend and s.is_up)


class MachineState(StrEnum):
    """A machine as its provider sees it (power, processes), not as its services answer."""

    DEAD = "dead"  # the provider sees no process (no power) on it
    FROZEN = "frozen"  # processes exist but none runs (a hung VM, SIGSTOP)
    PATRONI_DOWN = "patroni-down"  # PostgreSQL runs, Patroni does not: restart, never fence
    RUNNING = "running"  # processes run: a slow or cut-off node is not a dead one
    UNKNOWN = "unknown"
