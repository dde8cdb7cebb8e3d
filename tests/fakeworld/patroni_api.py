"""The fake Patroni's REST API, answering as Patroni 4.1 does (shapes of the fixtures in
tests/unit/fixtures/patroni_*), plus the PostgreSQL roles seen through the primary."""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import urlsplit

from tests.fakeworld.patroni import CATCHUP, Node, PatroniModel
from tests.fakeworld.wire import CallError


class PatroniApi:
    def __init__(self, model: PatroniModel) -> None:
        self.model = model
        self.world = model.world

    def node_at(self, url: str) -> Node:
        """The node whose REST API listens at `url` ("http://host:port", any path)."""
        parts = urlsplit(url)
        where = f"{parts.hostname}:{parts.port}"
        for m, n in self.model.nodes():
            if n.api == where and not m.frozen:
                return n
        raise CallError(f"{url}: connection refused")

    # ------------------------------------------------------------------ reads

    def is_primary(self, n: Node) -> bool:
        return (n.role == "primary" and n.state == "running") or n.stale_primary > 0

    def status(self, n: Node) -> dict[str, Any]:
        """GET /patroni (also the body of /primary and /replica)."""
        m = self.world.machines[n.machine]
        data = self.model.data(m, n)
        body: dict[str, Any] = {
            "state": "running" if n.state == "streaming" else n.state,
            "role": "primary" if self.is_primary(n) else "replica",
            "patroni": {"version": "4.1.5", "scope": self.world.cluster.name, "name": n.name},
            "pending_restart": bool(n.params and n.params != self.model.effective_params(n)),
        }
        if data:
            body["timeline"] = data["timeline"]
        if n.state == "streaming":
            body["replication_state"] = "streaming"
        if body["role"] == "primary":
            body["replication"] = [
                {"application_name": o.name, "state": "streaming"}
                for _, o in self.model.nodes()
                if o is not n and o.role == "replica" and o.state == "streaming"
            ]
        return body

    def primary(self, url: str) -> tuple[int, dict[str, Any]]:
        n = self.node_at(url)
        return (200 if self.is_primary(n) else 503), self.status(n)

    def replica(self, url: str) -> tuple[int, dict[str, Any]]:
        n = self.node_at(url)
        ok = n.role == "replica" and n.state == "streaming" and n.stale_primary == 0
        return (200 if ok else 503), self.status(n)

    def cluster(self, url: str) -> dict[str, Any]:
        n = self.node_at(url)
        members = self.model.view() if self.model.dcs_ok(n) else n.cache
        return {"members": copy.deepcopy(members), "scope": self.world.cluster.name}

    def config(self, url: str) -> dict[str, Any]:
        n = self.node_at(url)
        config = self.model.config if self.model.dcs_ok(n) else n.cache_config
        if not config:
            raise CallError(f"{url}/config: HTTP 502", status=502)
        return copy.deepcopy(config)

    def roles(self) -> frozenset[str] | None:
        """The roles on the primary's PostgreSQL; None when no primary answers."""
        leader = self.model.node(self.model.leader) if self.model.leader else None
        if leader is None or leader.role != "primary" or leader.state != "running":
            return None
        return frozenset(self.model.roles)

    def create_role(self, role: str) -> None:
        if self.roles() is None:
            raise CallError("no primary accepts connections")
        self.model.roles.add(role)

    # ------------------------------------------------------------------ changes

    def _call(self, what: str, url: str) -> tuple[Node, bool]:
        """The node, and whether the caller must see a timeout after the effect (a fault)."""
        n = self.node_at(url)
        if self.world.faults.hit("call_lost", f"{what} {url}"):
            raise CallError(f"Patroni {what} {url}: timed out (injected)")
        return n, self.world.faults.hit("call_late", f"{what} {url}")

    @staticmethod
    def _late(late: bool, what: str, url: str) -> None:
        if late:
            raise CallError(f"Patroni {what} {url}: timed out (injected, after the effect)")

    def patch_config(self, url: str, patch: dict[str, Any]) -> dict[str, Any]:
        n, late = self._call("PATCH /config", url)
        if not self.model.dcs_ok(n):
            raise CallError(f"{url}/config: HTTP 503 DCS unavailable", status=503)
        _merge(self.model.config, patch)
        self._late(late, "PATCH /config", url)
        return copy.deepcopy(self.model.config)

    def restart(self, url: str) -> str:
        n, late = self._call("POST /restart", url)
        if n.state not in ("running", "streaming"):
            raise CallError(f"{url}/restart: HTTP 503 postgres is {n.state}", status=503)
        n.params = self.model.effective_params(n)
        if n.role == "replica":
            n.state, n.countdown = "starting", 1
        self._late(late, "POST /restart", url)
        return "restarted successfully"

    def switchover(self, url: str, leader: str, candidate: str | None) -> str:
        n, late = self._call("POST /switchover", url)
        model = self.model
        if not model.dcs_ok(n):
            raise CallError(f"{url}/switchover: HTTP 503 DCS unavailable", status=503)
        if model.leader != leader:
            raise CallError(f"{url}/switchover: HTTP 412 leader name does not match", status=412)
        target = model.node(candidate) if candidate else None
        if target is None or target.state != "streaming" or target.lag > model.max_lag():
            raise CallError(f"{url}/switchover: HTTP 412 candidate not healthy", status=412)
        old = model.node(leader)
        tm = self.world.machines[target.machine]
        data = model.data(tm, target) or {"sysid": model.initialized, "timeline": 1}
        model._promote(tm, target, {**data, "timeline": data["timeline"]})
        if old is not None:
            model._demote(old)
        self._late(late, "POST /switchover", url)
        return f'Successfully switched over to "{target.name}"'

    def reinitialize(self, url: str) -> str:
        n, late = self._call("POST /reinitialize", url)
        if self.model.leader == n.name:
            raise CallError(f"{url}: HTTP 503 I am the leader, can not reinitialize", status=503)
        m = self.world.machines[n.machine]
        m.files.pop(f"{n.data_dir}/global/pg_control", None)
        n.state, n.role, n.countdown, n.lag = "creating replica", "replica", 2, 4 * CATCHUP
        self._late(late, "POST /reinitialize", url)
        return "reinitialize started"

    def reload(self, url: str) -> str:
        n, late = self._call("POST /reload", url)
        m = self.world.machines[n.machine]
        proc = m.proc("patroni")
        if proc is not None:
            proc.loaded = m.files.get(proc.config_path)
            self.model.on_reload(m, proc)
        self._late(late, "POST /reload", url)
        return "reload scheduled"


def _merge(into: dict[str, Any], patch: dict[str, Any]) -> None:
    """Patroni's PATCH semantics: nested dicts merge, a key set to None is removed."""
    for key, value in patch.items():
        if value is None:
            into.pop(key, None)
        elif isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)
