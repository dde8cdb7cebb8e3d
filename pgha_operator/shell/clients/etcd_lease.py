"""The operator's leader lease in the cluster's etcd: grant, create the key, keep alive, revoke.

Built on the same etcd3gw clients as clients/etcd.py (`EtcdClient`: the same endpoints,
failover, TLS and errors); only the lease and leader-key calls are added here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pgha_operator.shell.clients.etcd import EtcdClient, _b64


@dataclass(frozen=True)
class KeyHolder:
    value: str
    create_revision: int
    lease: int  # the lease id the key is attached to (0: none)


class EtcdLeaseClient(EtcdClient):
    def holder(self, key: str) -> KeyHolder | None:
        """The key's value and creation revision (None: no such key)."""
        found = self._call(f"get {key}", lambda c: c.get(key.encode(), metadata=True))
        if not found:
            return None
        value, meta = found[0]
        return KeyHolder(
            value.decode(), int(meta.get("create_revision", 0)), int(meta.get("lease", 0))
        )

    def grant(self, ttl: int) -> int:
        """A new lease of `ttl` seconds; its id."""
        data = self._call(
            "lease grant", lambda c: c.post(c.get_url("/lease/grant"), json={"TTL": ttl, "ID": 0})
        )
        return int(data["ID"])

    def create(self, key: str, value: str, lease: int) -> int | None:
        """Create `key` attached to `lease` only if it does not exist, in one transaction:
        the revision it was created at, or None when another holder has it."""
        k = _b64(key.encode())
        txn: dict[str, Any] = {
            "compare": [{"key": k, "result": "EQUAL", "target": "CREATE", "create_revision": 0}],
            "success": [{"request_put": {"key": k, "value": _b64(value.encode()), "lease": lease}}],
            "failure": [],
        }
        result = self._call(f"create {key}", lambda c: c.transaction(txn))
        # The gateway omits false booleans: a failed compare has no "succeeded" key.
        if not result.get("succeeded", False):
            return None
        return int(result["header"]["revision"])

    def keepalive(self, lease: int) -> int:
        """Refresh the lease; its remaining TTL in seconds (<= 0: it has expired)."""
        data = self._call(
            "lease keepalive", lambda c: c.post(c.get_url("/lease/keepalive"), json={"ID": lease})
        )
        return int(data.get("result", {}).get("TTL", 0))

    def revoke(self, lease: int) -> None:
        """End the lease now; etcd deletes the keys attached to it (a standby takes over
        at once instead of after the TTL)."""
        self._call(
            "lease revoke", lambda c: c.post(c.get_url("/kv/lease/revoke"), json={"ID": lease})
        )
