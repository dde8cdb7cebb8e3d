"""One operator's claim on one cluster: its state dir's flock and its lease in the cluster's
etcd, kept alive by a thread. The decision of who acts is core/leadership.py's; this module
gathers what it needs (flock, etcd key, lease deadline, the last observation) and keeps
the lease.

`run` calls `refresh()` every half second while standby and before every cycle; every
acting path asks `may_act()` right before a change (the cycle before executing, the
executor before each action, the fencer before a power-off); the fencer's key release
carries `guard()` into its etcd transaction.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence

import structlog

from pgha_operator.core.errors import OperatorError, PermanentError
from pgha_operator.core.facts.observed import Observed
from pgha_operator.core.leadership import (
    KEEPALIVE_SECONDS,
    TTL_SECONDS,
    LeaderDecision,
    LeaseGuard,
    LeaseView,
    Role,
    decide,
    etcd_quorum_stopped,
    leader_key,
)
from pgha_operator.shell.clients import Clients, EtcdLeaseApi
from pgha_operator.shell.state import LockHeld, StateDir

__all__ = ["Leadership", "LeaseHeld", "LockHeld", "operator_identity"]

log = structlog.get_logger("pgha-operator")

ETCD_TIMEOUT = 1.0  # seconds per lease call: well inside the margin before the lease ends


class LeaseHeld(PermanentError):
    """Another operator holds the cluster's leader key; `holder` names it."""

    def __init__(self, key: str, holder: str) -> None:
        super().__init__(f"{key} is held by {holder}")
        self.key = key
        self.holder = holder


def operator_identity() -> str:
    """Unique per process: host, pid and a random tag (a reused pid is another operator)."""
    return f"{socket.gethostname()}/pid {os.getpid()}/{uuid.uuid4().hex[:8]}"


class Leadership:
    def __init__(
        self,
        state: StateDir,
        cluster: str,
        etcd_urls: Callable[[], Sequence[str]],
        clients: Clients,
        who: str = "run",
        ttl: int = TTL_SECONDS,
    ) -> None:
        self.state = state
        self.key = leader_key(cluster)
        self.identity = operator_identity()
        self.who = who
        self.ttl = ttl
        self._etcd_urls = etcd_urls
        self._clients = clients
        self._etcd: tuple[tuple[str, ...], EtcdLeaseApi] | None = None
        self._mutex = threading.Lock()
        self._flock_holder: str | None = None  # who holds it when we do not
        self._etcd_answers = False
        self._holder: str | None = None
        self._lease: int | None = None
        self._revision: int | None = None
        self._expires: float | None = None  # monotonic time our lease surely lasts until
        self._lease_seen: float | None = None  # monotonic time a live lease was last seen
        self._etcd_stopped = False
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None
        self.decision = LeaderDecision(Role.STANDBY, False, False, "not started")

    # --- what the loop asks -------------------------------------------------------------------

    @property
    def role(self) -> Role:
        return self.decision.role

    def view(self) -> LeaseView:
        with self._mutex:
            now = time.monotonic()
            return LeaseView(
                flock=self.state.operator_lock.held,
                etcd_answers=self._etcd_answers,
                holder=self._holder,
                ours=self._revision is not None,
                expires_in=None if self._expires is None else self._expires - now,
                may_bootstrap=self.state.may_bootstrap(),
                etcd_stopped=self._etcd_stopped,
                lease_seen_ago=None if self._lease_seen is None else now - self._lease_seen,
            )

    def status(self) -> dict[str, str | None]:
        """What status shows: this operator's role, why, and who leads."""
        with self._mutex:
            leader = self._holder
        return {
            "role": str(self.decision.role),
            "reason": self.decision.reason,
            "identity": self.identity,
            "leader": leader,
            "leaseKey": self.key,
        }

    def may_act(self) -> bool:
        """Now, with the lease's deadline as of this instant."""
        return decide(self.view()).act

    def guard(self) -> LeaseGuard | None:
        with self._mutex:
            if self._revision is None:
                return None
            return LeaseGuard(self.key, self.identity, self._revision)

    def saw(self, observed: Observed, etcd_members: Sequence[str]) -> None:
        """The last observation: whether an etcd quorum can run at all."""
        up = [name for name, fact in observed.machines.items() if fact.exists]
        stopped = etcd_quorum_stopped(etcd_members, up, observed.services)
        with self._mutex:
            self._etcd_stopped = stopped

    # --- taking and keeping it ------------------------------------------------------------------

    def refresh(self) -> LeaderDecision:
        """Take the flock if free, read the leader key, campaign when it is free."""
        self._try_flock()
        if self.state.operator_lock.held:
            self._read_key()
            if decide(self.view()).campaign:
                self._campaign()
        decision = decide(self.view())
        if decision != self.decision:
            log.info("leadership", role=str(decision.role), reason=decision.reason)
        self.decision = decision
        return decision

    def claim(self) -> None:
        """For one-shot commands (apply, destroy, switchover, rotate): the flock, then the
        lease when etcd answers; PermanentError naming the holder when another leads."""
        self.state.operator_lock.acquire(self.who)  # raises LockHeld
        decision = self.refresh()
        if self._etcd_answers and not decision.act:
            holder = self._holder or "unknown"
            self.release()
            raise LeaseHeld(self.key, holder)

    def release(self) -> None:
        """Revoke the lease (a standby takes over at once) and let the flock go."""
        self._stop.set()
        if self._keeper is not None:
            self._keeper.join(timeout=2 * ETCD_TIMEOUT)
        lease = self._drop_lease()
        if lease is not None:
            try:
                self._client().revoke(lease)
            except OperatorError as exc:
                log.warning("leader lease not revoked; it expires by itself", error=str(exc))
        self.state.operator_lock.release()
        self.decision = LeaderDecision(Role.STANDBY, False, False, "stopped")

    def _try_flock(self) -> None:
        if self.state.operator_lock.held:
            return
        try:
            self.state.operator_lock.acquire(self.who)
            self._flock_holder = None
        except LockHeld as exc:
            self._flock_holder = exc.holder

    def _client(self) -> EtcdLeaseApi:
        urls = tuple(self._etcd_urls())
        if self._etcd is None or self._etcd[0] != urls:
            self._etcd = (urls, self._clients.etcd_lease(urls, ETCD_TIMEOUT))
        return self._etcd[1]

    def _read_key(self) -> None:
        try:
            holder = self._client().holder(self.key)
        except OperatorError:
            with self._mutex:
                self._etcd_answers = False
            return
        with self._mutex:
            self._etcd_answers = True
            self._holder = holder.value if holder else None
            if holder is not None:
                self._lease_seen = time.monotonic()
            mine = (
                holder is not None
                and holder.value == self.identity
                and holder.create_revision == self._revision
            )
        if self._revision is not None and not mine:
            log.warning("leader key lost", holder=self._holder)
            self._drop_lease()

    def _campaign(self) -> None:
        client = self._client()
        try:
            started = time.monotonic()
            lease = client.grant(self.ttl)
            revision = client.create(self.key, self.identity, lease)
            if revision is None:
                client.revoke(lease)  # lost the race: another operator leads
                self._read_key()
                return
        except OperatorError as exc:
            log.warning("campaign failed", error=str(exc))
            return
        with self._mutex:
            self._lease, self._revision = lease, revision
            self._expires = started + self.ttl
            self._holder, self._lease_seen = self.identity, time.monotonic()
        self._start_keeper()

    def _start_keeper(self) -> None:
        self._stop.clear()
        if self._keeper is None or not self._keeper.is_alive():
            self._keeper = threading.Thread(target=self._keep, name="lease-keeper", daemon=True)
            self._keeper.start()

    def _keep(self) -> None:
        """Refresh the lease every KEEPALIVE_SECONDS; its deadline counts from the moment
        each refresh was sent (etcd's own countdown starts later: ours ends first)."""
        while not self._stop.wait(KEEPALIVE_SECONDS):
            with self._mutex:
                lease = self._lease
            if lease is None:
                return
            sent = time.monotonic()
            try:
                ttl = self._client().keepalive(lease)
            except OperatorError as exc:
                log.warning("leader lease keepalive failed", error=str(exc))
                continue
            if ttl <= 0:
                log.warning("leader lease expired")
                self._drop_lease()
                return
            with self._mutex:
                if self._lease == lease:
                    self._expires = sent + ttl
                    self._lease_seen = time.monotonic()

    def _drop_lease(self) -> int | None:
        with self._mutex:
            lease = self._lease
            self._lease = self._revision = self._expires = None
            if self._holder == self.identity:
                self._holder = None
            return lease
