"""A fake Patroni cluster with its PostgreSQL: what makes a cluster slow and stubborn to form.

- Patroni needs its DCS: the fake etcd must have quorum and one of the etcd hosts its loaded
  patroni.yml names must serve. Without it a primary demotes and views go stale.
- The first node to reach the DCS takes the init lock and spends cycles in `initializing new
  cluster`; the DCS config is the `bootstrap.dcs` of *its* patroni.yml.
- Others clone (`creating replica`, a few cycles), then stream with a lag that shrinks over
  cycles; only a replica within maximum_lag_on_failover may take over.
- A leader key outlives a crashed primary for `KEY_TTL` cycles (a graceful stop releases it);
  a member key outlives a stopped Patroni for `KEY_TTL` cycles, so /cluster still lists it.
- PATCH /config changes the DCS; parameters that need a restart set pending_restart until
  POST /restart. POST /switchover and /reinitialize check what the real ones check.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml

from tests.fakeworld.machines import FakeMachine, Proc
from tests.fakeworld.wire import CallError

if TYPE_CHECKING:
    from tests.fakeworld.world import FakeWorld

KEY_TTL = 2  # cycles a key outlives the node that stopped refreshing it
CATCHUP = 1 << 20  # bytes a streaming replica catches up per cycle
PG_CONTROL = "global/pg_control"  # under the data dir: system id and timeline
RESTART_PARAMS = frozenset(
    {
        "max_connections",
        "max_wal_senders",
        "max_replication_slots",
        "max_worker_processes",
        "max_prepared_transactions",
        "max_locks_per_transaction",
        "shared_buffers",
        "wal_level",
        "wal_log_hints",
        "hot_standby",
        "track_commit_timestamp",
    }
)
BUSY = ("initializing new cluster", "creating replica", "starting")
# What Patroni 4.1 logs when pg_rewind fails (tests/unit/fixtures/start_failed_*.log).
REWIND_FAILED_LOG = """\
2026-11-28 04:53:30,330 INFO: pg_rewind exit code=1
pg_rewind: servers diverged at WAL location 0/3000000 on timeline 1
pg_rewind: error: could not find previous WAL record at 0/2000100
2026-11-28 04:53:30,332 ERROR: Failed to rewind from healthy primary: {leader}
"""


@dataclass
class Node:
    """One running Patroni and its PostgreSQL, as its loaded patroni.yml describes it."""

    machine: str
    config: dict[str, Any]
    state: str = "stopped"
    role: str = "replica"
    countdown: int = 0
    lag: int = 0
    params: dict[str, Any] = field(default_factory=dict)  # what PostgreSQL started with
    cache: list[dict[str, Any]] = field(default_factory=list)  # last /cluster view
    cache_config: dict[str, Any] = field(default_factory=dict)
    stale_primary: int = 0  # a drift: still answers /primary 200 for this many cycles

    @property
    def name(self) -> str:
        return str(self.config.get("name", self.machine))

    @property
    def api(self) -> str:
        return str(self.config["restapi"]["connect_address"])

    @property
    def data_dir(self) -> str:
        return str(self.config["postgresql"]["data_dir"])


class PatroniModel:
    def __init__(self, world: FakeWorld) -> None:
        self.world = world
        self.config: dict[str, Any] = {}  # the DCS config (GET /config)
        self.member_keys: dict[str, tuple[dict[str, Any], int]] = {}
        self.leader_ttl = 0
        self.initializing: str | None = None
        self.roles: set[str] = set()
        # Passwords set by ALTER ROLE (role -> password); a role not here takes any login.
        self.passwords: dict[str, str] = {}
        self.databases: set[str] = set()

    # ------------------------------------------------------------------ keys in the fake etcd

    def prefix(self) -> str:
        return f"/service/{self.world.cluster.name}"

    @property
    def leader(self) -> str | None:
        return self.world.etcd.keys.get(f"{self.prefix()}/leader")

    def _set_leader(self, name: str | None) -> None:
        key = f"{self.prefix()}/leader"
        if name is None:
            self.world.etcd.keys.pop(key, None)
        else:
            self.world.etcd.keys[key] = name
            self.leader_ttl = KEY_TTL

    @property
    def initialized(self) -> str | None:
        return self.world.etcd.keys.get(f"{self.prefix()}/initialize")

    # ------------------------------------------------------------------ nodes and data

    def nodes(self) -> list[tuple[FakeMachine, Node]]:
        out = []
        for m in sorted(self.world.machines.values(), key=lambda m: m.name):
            proc = m.proc("patroni")
            if proc is not None and proc.ready and "node" in proc.extra:
                out.append((m, proc.extra["node"]))
        return out

    def node(self, name: str) -> Node | None:
        return next((n for _, n in self.nodes() if n.name == name), None)

    def data(self, m: FakeMachine, n: Node) -> dict[str, Any] | None:
        raw = m.files.get(f"{n.data_dir}/{PG_CONTROL}")
        return json.loads(raw) if raw else None

    def _write_data(self, m: FakeMachine, n: Node, sysid: str, timeline: int) -> None:
        body = json.dumps({"sysid": sysid, "timeline": timeline}).encode()
        m.files[f"{n.data_dir}/{PG_CONTROL}"] = body

    def dcs_ok(self, n: Node) -> bool:
        if not self.world.etcd.quorum():
            return False
        etcd3 = n.config.get("etcd3", {})
        for host in etcd3.get("hosts", []):
            try:
                self.world.etcd.endpoint(f"{etcd3.get('protocol', 'http')}://{host}")
                return True
            except CallError:
                continue
        return False

    def effective_params(self, n: Node) -> dict[str, Any]:
        dcs = self.config.get("postgresql", {}).get("parameters", {}) or {}
        local = n.config.get("postgresql", {}).get("parameters", {}) or {}
        merged = {**dcs, **local}
        return {k: str(v) for k, v in merged.items() if k in RESTART_PARAMS}

    def max_lag(self) -> int:
        return int(self.config.get("maximum_lag_on_failover", 1 << 20))

    # ------------------------------------------------------------------ processes

    def on_start(self, machine: FakeMachine, proc: Proc) -> None:
        proc.extra["node"] = Node(machine.name, yaml.safe_load(proc.loaded or b"") or {})

    def on_reload(self, machine: FakeMachine, proc: Proc) -> None:
        node = proc.extra.get("node")
        if node is not None:
            node.config = yaml.safe_load(proc.loaded or b"") or {}

    def on_stop(self, machine: FakeMachine, proc: Proc, graceful: bool) -> None:
        node: Node | None = proc.extra.get("node")
        if node is None:
            return
        if self.initializing == node.name:
            self.initializing = None
            self.world.etcd.keys.pop(f"{self.prefix()}/initialize", None)
        if graceful and self.leader == node.name and self.world.etcd.quorum():
            self._set_leader(None)  # Patroni releases its key on a clean shutdown

    # ------------------------------------------------------------------ one HA loop per cycle

    def tick(self) -> None:
        refreshed: set[str] = set()
        for m, n in self.nodes():
            n.stale_primary = max(0, n.stale_primary - 1)
            dcs = self.dcs_ok(n)
            if n.countdown > 0:
                n.countdown -= 1
                if n.countdown == 0:
                    self._finish(m, n)
            elif dcs:
                self._ha(m, n)
            elif n.role == "primary":
                n.role, n.state = "replica", "running"  # cannot hold its key: read-only
            if dcs:
                self._publish(n)
                refreshed.add(n.name)
                n.cache, n.cache_config = self.view(), copy.deepcopy(self.config)
        self._expire(refreshed)

    def _expire(self, refreshed: set[str]) -> None:
        holder = self.node(self.leader) if self.leader else None
        healthy = holder is not None and holder.role == "primary" and holder.state == "running"
        if holder is not None and healthy and holder.name in refreshed:
            self.leader_ttl = KEY_TTL
        elif self.leader is not None and self.world.etcd.quorum():
            self.leader_ttl -= 1
            if self.leader_ttl <= 0:
                self._set_leader(None)
        for name, (info, ttl) in list(self.member_keys.items()):
            if name not in refreshed:
                if ttl <= 1:
                    del self.member_keys[name]
                else:
                    self.member_keys[name] = (info, ttl - 1)

    def _ha(self, m: FakeMachine, n: Node) -> None:
        init, data, leader = self.initialized, self.data(m, n), self.leader
        if init is None:
            if data is None and self.initializing is None:
                self.initializing = n.name
                self.world.etcd.keys[f"{self.prefix()}/initialize"] = "pending"
                n.state, n.role, n.countdown = "initializing new cluster", "primary", 2
            return
        if leader == n.name or init == "pending":
            return
        if data is None or data["sysid"] != init:
            lead = self.node(leader) if leader else None
            if lead is not None and lead.state == "running" and n.state != "start failed":
                n.state, n.role, n.countdown = "creating replica", "replica", 2
            return
        if leader is None:
            if self._can_lead(n):
                self._promote(m, n, data)
            elif n.state == "stopped":
                n.state, n.countdown = "starting", 1  # read-only first, then it may run
            return
        if n.role == "primary":
            self._demote(n)
        elif n.state == "stopped":
            n.state, n.countdown = "starting", 1
        elif n.state == "streaming":
            n.lag = max(0, n.lag - CATCHUP)
        elif n.state == "running":
            n.state = "streaming"

    def _can_lead(self, n: Node) -> bool:
        if n.role == "primary" and n.state == "running":
            return True
        return n.state in ("streaming", "running") and n.lag <= self.max_lag()

    def _promote(self, m: FakeMachine, n: Node, data: dict[str, Any]) -> None:
        self._set_leader(n.name)
        if n.role != "primary":
            self._write_data(m, n, data["sysid"], data["timeline"] + 1)
        n.role, n.state, n.lag = "primary", "running", 0

    def _demote(self, n: Node) -> None:
        n.role, n.lag = "replica", 0
        if self.world.faults.hit("rewind_fails", f"rejoin of {n.name}"):
            n.state = "start failed"  # pg_rewind failed: Patroni will not wipe it alone
            self._log(n, REWIND_FAILED_LOG.format(leader=self.leader))
        else:
            n.state, n.countdown = "starting", 1

    def _log(self, n: Node, text: str) -> None:
        """Patroni's log, where the local supervisor keeps it (PostgreSQL's lines too)."""
        m = self.world.machines[n.machine]
        path = f"{self.world.layout.log_dir}/patroni.log"
        m.files[path] = m.files.get(path, b"") + text.encode()

    def _finish(self, m: FakeMachine, n: Node) -> None:
        leader = self.node(self.leader) if self.leader else None
        if n.state == "initializing new cluster":
            sysid = f"7{len(self.world.etcd.keys):05d}{self.world.time:06d}"
            self._write_data(m, n, sysid, 1)
            self.world.etcd.keys[f"{self.prefix()}/initialize"] = sysid
            self._set_leader(n.name)
            self.config = copy.deepcopy(n.config.get("bootstrap", {}).get("dcs", {}))
            self.roles = {"postgres", "replicator"}
            self.databases = {"postgres", "template0", "template1"}
            self.initializing = None
            n.state = "running"
        elif n.state == "creating replica":
            lm = self.world.machines.get(leader.machine) if leader else None
            source = self.data(lm, leader) if lm and leader else None
            if source is None:
                n.state = "stopped"  # the primary went away mid-clone: try again later
                return
            self._write_data(m, n, source["sysid"], source["timeline"])
            n.state, n.lag = "streaming", self.world.faults.delay(1, 3) * CATCHUP
        elif n.state == "starting":
            streams = n.role == "replica" and leader is not None and leader is not n
            n.state = "streaming" if streams else "running"
            n.lag = self.world.faults.delay(0, 2) * CATCHUP if streams else 0
        n.params = self.effective_params(n)

    def _publish(self, n: Node) -> None:
        host, _, port = str(n.config["postgresql"]["connect_address"]).partition(":")
        info: dict[str, Any] = {
            "name": n.name,
            "role": "leader" if self.leader == n.name else "replica",
            "state": n.state,
            "api_url": f"http://{n.api}/patroni",
            "host": host,
            "port": int(port or 5432),
        }
        m = self.world.machines[n.machine]
        data = self.data(m, n)
        if data and n.state in ("running", "streaming"):
            info["timeline"] = data["timeline"]
        if info["role"] == "replica":
            info["lag"] = n.lag if n.state == "streaming" else "unknown"
        if n.params and n.params != self.effective_params(n):
            info["pending_restart"] = True
        self.member_keys[n.name] = (info, KEY_TTL)

    def view(self) -> list[dict[str, Any]]:
        """/cluster: the member keys, the role of each taken from the leader key (as Patroni
        does), the rest as the member last published it (stale for a dead node)."""
        out = []
        for name in sorted(self.member_keys):
            info = copy.deepcopy(self.member_keys[name][0])
            info["role"] = "leader" if name == self.leader else "replica"
            if info["role"] == "leader":
                info.pop("lag", None)
            out.append(info)
        return out
