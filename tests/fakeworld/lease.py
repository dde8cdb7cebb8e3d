"""The fake etcd's leases and key revisions: what shell/clients/etcd_lease.py and the
fencer's guarded release need (grant, create if absent, keepalive, revoke, expire)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgha_operator.core.leadership import LeaseGuard
from pgha_operator.shell.clients import ComponentError, KeyHolder

if TYPE_CHECKING:
    from tests.fakeworld.etcd import EtcdModel


class LeaseModel:
    def __init__(self, etcd: EtcdModel) -> None:
        self.etcd = etcd
        self.revision = 1
        self.created: dict[str, int] = {}  # key -> its create revision
        self.attached: dict[int, set[str]] = {}  # live lease -> its keys
        self.ttls: dict[int, int] = {}
        self._next = 7_000

    def holder(self, key: str) -> KeyHolder | None:
        value = self.etcd.keys.get(key)
        if value is None:
            return None
        lease = next((lid for lid, keys in self.attached.items() if key in keys), 0)
        return KeyHolder(value, self.created.get(key, 0), lease)

    def grant(self, ttl: int) -> int:
        self._next += 1
        self.attached[self._next], self.ttls[self._next] = set(), ttl
        return self._next

    def create(self, key: str, value: str, lease: int) -> int | None:
        if key in self.etcd.keys:
            return None
        if lease not in self.attached:
            raise ComponentError("etcdserver: requested lease not found", url="fake")
        self.revision += 1
        self.etcd.keys[key], self.created[key] = value, self.revision
        self.attached[lease].add(key)
        return self.revision

    def keepalive(self, lease: int) -> int:
        return self.ttls[lease] if lease in self.attached else 0

    def revoke(self, lease: int) -> None:
        """Also what a lease's expiry does: its keys go."""
        for key in self.attached.pop(lease, set()):
            self.etcd.keys.pop(key, None)
            self.created.pop(key, None)

    def guard_holds(self, guard: LeaseGuard | None) -> bool:
        if guard is None:
            return True
        return (
            self.etcd.keys.get(guard.key) == guard.value
            and self.created.get(guard.key) == guard.revision
        )
