"""The fast path of failover: watch the primary between reconcile cycles and, when
fencing.decide() says so, power its machine off and release its leader key.

Two ways to see a death: the provider reports it the moment the machine's vital processes
exit (a pidfd each: death_watch.py, where the provider can), and `GET /primary` probes
every ~200 ms, which stay as the fallback (a frozen machine, a provider that cannot).

I/O lives here; the decision is fencing.decide (pure). Patroni still elects: the operator
only makes sure the old primary is gone and deletes the key it can no longer refresh.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import structlog

from pgha_operator.core.errors import OperatorError
from pgha_operator.core.facts.observed import Observed
from pgha_operator.core.facts.types import MachineState
from pgha_operator.core.fence_decision import (
    FenceDecision,
    FenceView,
    decide,
    failover_key_value,
)
from pgha_operator.core.leadership import LeaseGuard
from pgha_operator.core.plan import Desired
from pgha_operator.core.plan.patroni import switchover_candidate
from pgha_operator.shell import fence_asking as asking
from pgha_operator.shell import fence_routing as routing
from pgha_operator.shell.clients import Clients, EtcdApi, PatroniApi
from pgha_operator.shell.death_watch import DeathWatch
from pgha_operator.shell.fence_etcd import FirstAnswering
from pgha_operator.shell.hosts.base import HostError
from pgha_operator.shell.metrics import ClusterMetrics
from pgha_operator.shell.providers.base import (
    DeathReports,
    Fencing,
    MachineStates,
    PeerReach,
    Provider,
    capability,
)

log = structlog.get_logger("pgha-operator")

PROBE_TIMEOUT = 0.15  # seconds: a healthy Patroni answers GET /primary in a few ms
REDECIDE_EVERY = 5  # failed probes between two evaluations of a refused fence
SETTLE = 0.3  # seconds a reported death may take to show in the provider's machine state
WAKE_CHECK = 0.1  # seconds between two looks at the loop's wake event while watching
FROZEN_CONFIRM = 0.1  # seconds a machine the provider sees frozen must stay so

RELEASED = "leader key released"

Journal = Callable[[dict[str, Any]], None]


class LeaseCheck(Protocol):
    """The operator's leadership as the fencer needs it (shell/leadership.py)."""

    def may_act(self) -> bool: ...

    def guard(self) -> LeaseGuard | None: ...


class Fencer:
    def __init__(
        self,
        desired: Desired,
        provider: Provider,
        clients: Clients,
        lease: LeaseCheck | None = None,
        metrics: ClusterMetrics | None = None,
        journal: Journal | None = None,
    ) -> None:
        """`lease`: fence only while it holds, and release the key under its guard (None:
        an operator without a lease, e.g. a test's). `metrics`: probe latency and fencing
        decisions, for /metrics. `journal`: hears each fence's timeline (monotonic times of
        death seen, fenced, key released), for the drill."""
        self.provider = provider
        self.clients = clients
        self.lease = lease
        self.metrics = metrics
        self.journal = journal
        # `run` probes in a thread of its own while cycles call update() and holding().
        self._lock = threading.RLock()
        self._apis: dict[str, PatroniApi] = {}  # one per node: keeps its connection open
        self._etcd_client: FirstAnswering | None = None
        self.watch: DeathWatch | None = None  # the leader's vital processes
        self.last_fence: float | None = None
        self.healthy_since_fence = True  # a primary answered the probes since the last fence
        self.last_decision: str | None = None
        self.leader: str | None = None
        self.failures = 0
        self.candidates: tuple[str, ...] = ()
        self.fenced: str | None = None  # held down until another member leads
        self.update(desired, None)

    def update(self, desired: Desired, observed: Observed | None) -> None:
        """Follow each reconcile cycle's view: the manifest, the leader, the candidates."""
        with self._lock:
            self._update(desired, observed)

    def _update(self, desired: Desired, observed: Observed | None) -> None:
        self.desired = desired
        spec = desired.cluster.spec
        self.enabled = spec.failover.fencing == "auto"
        self.needed = spec.failover.probe_failures
        self.interval = spec.failover.probe_interval_ms / 1000
        if observed is None:
            return
        # The key holder as /cluster reports it, even when it stopped answering: that is
        # exactly the machine to watch.
        leader = observed.patroni.leader
        name = leader.name if leader else None
        if name is not None and name != self.fenced:
            self.fenced = None
        if name != self.leader:
            self.leader, self.failures, self.last_decision = name, 0, None
        candidate = switchover_candidate(desired, observed, name) if name else None
        self.candidates = (candidate,) if candidate else ()

    def arm(self) -> None:
        """Watch the leader's vital processes, anew when they changed (a restart, a new
        leader); nothing when the provider cannot report deaths or fencing is off. Only
        the thread that waits on the watch arms it (its pidfds are closed here)."""
        reports = capability(self.provider, DeathReports)
        if not self.enabled or reports is None or self.leader is None:
            self._unwatch()
            return
        vital = reports.vital_processes(self.leader)
        current = self.watch
        # Kept when unchanged, and when its processes are gone: dying now, its pidfds
        # report it (re-reading would lose a death that happened between two waits).
        if current and current.machine == self.leader and (not vital or current.processes == vital):
            return
        self._unwatch()
        if vital:
            self.watch = DeathWatch(self.leader, vital)

    def _unwatch(self) -> None:
        if self.watch is not None:
            self.watch.close()
            self.watch = None

    def wait(self, timeout: float, wake: threading.Event) -> FenceDecision | None:
        """Until the next probe is due (or `wake`): on the leader's death watch when there
        is one, acting the moment the provider reports the machine dead."""
        with self._lock:
            self.arm()
            watch = self.watch
        if watch is None or not watch.armed:
            wake.wait(timeout)
            return None
        deadline = time.monotonic() + timeout
        while not wake.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if watch.wait(min(left, WAKE_CHECK)):
                return self.on_death()
        return None

    def on_death(self) -> FenceDecision | None:
        """The provider saw every vital process of the leader's machine exit: decide now."""
        seen = time.monotonic()
        with self._lock:
            return self._on_death(seen)

    def _on_death(self, seen: float) -> FenceDecision | None:
        if self.leader is None or (self.lease is not None and not self.lease.may_act()):
            return None
        if self._is_primary(self.leader):
            return None  # it answers as primary: whatever exited, it was not its death
        # It serves nothing any more: out of the load balancers now, before the decision,
        # so that clients reconnecting meanwhile are not sent to a dead server.
        self.out_of_load_balancers(self.leader)
        self.failures += 1
        return self.evaluate(seen, "event")

    def route_to_new_leader(self, old: str) -> None:
        """The member that takes the released key, UP in the load balancers at once."""
        lbs = self.desired.topology.loadbalancers
        routing.route_to_new_leader(self.provider, lbs, old, lambda: self._leader_key()[0])

    def out_of_load_balancers(self, node: str) -> None:
        """A dead member, out of the load balancers at once."""
        routing.out_of_load_balancers(self.provider, self.desired.topology.loadbalancers, node)

    def holding(self) -> frozenset[str]:
        """A machine whose fate is being decided: the loop must not restart it meanwhile."""
        with self._lock:
            return self._holding()

    def _holding(self) -> frozenset[str]:
        if self.leader and self.failures > 0 and self.last_decision is None:
            return frozenset({self.leader})
        return frozenset()

    def probe(self) -> FenceDecision | None:
        """One probe of the leader; a decision when one was due."""
        with self._lock:
            return self._probe()

    def _probe(self) -> FenceDecision | None:
        if self.leader is None or (self.lease is not None and not self.lease.may_act()):
            return None  # a standby watches nothing: the leading operator fences
        if self._is_primary(self.leader):
            self.failures, self.last_decision = 0, None
            self.healthy_since_fence = True
            return None
        self.failures += 1
        due = self.failures == self.needed or (
            self.failures > self.needed and (self.failures - self.needed) % REDECIDE_EVERY == 0
        )
        if due:
            return self.evaluate(time.monotonic(), "probes")
        if self.failures < self.needed and self._stays_frozen():
            return self.evaluate(time.monotonic(), "frozen")
        return None

    def _stays_frozen(self) -> bool:
        """The provider sees every process of the leader's machine stopped, twice
        FROZEN_CONFIRM apart: a hung machine reported by the provider itself, no need to
        wait for more failed probes (a pause shorter than that is left alone)."""
        states = capability(self.provider, MachineStates)
        if not self.enabled or states is None or self.leader is None:
            return False
        if states.machine_state(self.leader) != MachineState.FROZEN:
            return False
        time.sleep(FROZEN_CONFIRM)
        return states.machine_state(self.leader) == MachineState.FROZEN

    def evaluate(self, seen: float, how: str) -> FenceDecision:
        """Decide on the leader's fate (its death `seen` then, `how`: by "probes", or
        reported by the provider: "event", "frozen"), fence if allowed, tell."""
        view = self.view(death_reported=how != "probes")
        decision = decide(view)
        kind = "refused" if view.enabled and view.provider_can_fence else "off"
        if decision.fence:
            decision = self.fence(decision, seen, how)
            kind = "taken" if decision.fence else "failed"
        if self.metrics:
            self.metrics.record_fencing(kind)
        if decision.reason != self.last_decision:
            log.warning("fencing", decision=decision.reason)
        self.last_decision = decision.reason
        return decision

    def view(self, death_reported: bool = False) -> FenceView:
        assert self.leader is not None
        topo = self.desired.topology
        others = [n for n in topo.postgres if n != self.leader]
        states = capability(self.provider, MachineStates)
        leader = self.leader
        # All at once: the other nodes' REST APIs (a TLS handshake each, on Patroni's side
        # too), the leader key and the machine's state; the fence waits for the slowest.
        reach = None if death_reported else capability(self.provider, PeerReach)
        with ThreadPoolExecutor(max_workers=2 * len(others) + 2) as pool:
            alive = [pool.submit(lambda n=n: self._patroni(n).alive()) for n in others]
            # And whether each replica's own network still reaches the leader (a running
            # leader is fenced only when every answering replica lost it too).
            lost = (
                [pool.submit(asking.lost_leader, reach, topo, n, leader) for n in others]
                if reach
                else []
            )
            key = pool.submit(self._leader_key)
            settle = SETTLE if death_reported else 0.0
            state = pool.submit(asking.settled_state, states, leader, settle) if states else None
            answers = [f.result() for f in alive]
            key_holder, quorum = key.result()
            machine = state.result() if state else MachineState.UNKNOWN
            lost_by = (
                sum(a and f.result() for a, f in zip(answers, lost, strict=True)) if reach else None
            )
        return FenceView(
            enabled=self.enabled,
            provider_can_fence=self.provider.can_fence,
            leader=self.leader,
            failures=self.failures,
            failures_needed=self.needed,
            machine=machine,
            etcd_quorum=quorum,
            leader_key=key_holder,
            reachable_nodes=sum(answers),
            total_nodes=len(topo.postgres),
            candidates=self.candidates,
            unhealthy_since_fence=(
                None
                if self.last_fence is None or self.healthy_since_fence
                else time.monotonic() - self.last_fence
            ),
            death_reported=death_reported,
            replicas_lost_leader=lost_by,
        )

    def fence(self, decision: FenceDecision, seen: float, how: str) -> FenceDecision:
        assert self.leader is not None
        fencing = capability(self.provider, Fencing)
        if fencing is None:
            return FenceDecision(False, f"provider {self.provider.kind!r} cannot power off")
        if self.lease is not None and not self.lease.may_act():
            return FenceDecision(False, "this operator lost its lease: the leading one fences")
        decided = time.monotonic()
        if how != "event":  # (a reported death was taken out of them at once)
            # Before the power-off: its clients' sessions break then and reconnect at once;
            # still listed UP, the dead server would hold them in HAProxy's connect retries.
            self.out_of_load_balancers(self.leader)
        try:
            fencing.power_off(self.leader)  # confirms that no process is left
        except (HostError, OperatorError, OSError) as exc:
            return FenceDecision(False, f"fencing {self.leader} failed, key kept: {exc}")
        self.last_fence = fenced = time.monotonic()
        self.healthy_since_fence = False
        self.fenced = self.leader
        released = self.release()
        released_at = time.monotonic()
        if released == RELEASED:
            self.route_to_new_leader(self.leader)
        if self.journal is not None:
            self.journal(
                {
                    "machine": self.leader,
                    "seenBy": how,
                    "wallTime": time.time(),
                    # time.monotonic() of this host: comparable with a drill's own stamps
                    "seen": seen,
                    "decided": decided,
                    "fenced": fenced,
                    "released": released_at,
                    "release": released,
                }
            )
        return FenceDecision(True, f"{decision.reason}; machine powered off, {released}")

    def release(self) -> str:
        """Delete Patroni's leader key in ONE etcd transaction that also checks that it still
        names the fenced node and that this operator's own leader key is still the one it
        created (its lease holds): no other operator can lead meanwhile. With synchronous
        replication the same transaction names the candidate in Patroni's failover key
        (fence_decision.failover_key_value)."""
        assert self.leader is not None
        guard = self.lease.guard() if self.lease is not None else None
        if self.lease is not None and guard is None:
            return "leader key kept: this operator holds no lease"
        named = failover_key_value(self.desired.cluster.spec.postgres.synchronous, self.candidates)
        put = {self.leader_key("failover"): named} if named else None
        try:
            released = self._etcd().delete_key_if_value(self.leader_key(), self.leader, guard, put)
        except OperatorError as exc:
            return f"but releasing the key failed: {exc}"
        if released:
            return RELEASED
        return "leader key not released (taken over, or this operator's lease ended)"

    def leader_key(self, key: str = "leader") -> str:
        """Patroni's `key` of this cluster in etcd: its leader key, or "failover" (a manual
        failover request, which Patroni deletes once a member took the leader key)."""
        spec = self.desired.cluster.spec
        return f"{spec.patroni.namespace.rstrip('/')}/{self.desired.cluster.name}/{key}"

    def _leader_key(self) -> tuple[str | None, bool]:
        """(holder, quorum): a successful read of the key proves a quorum answered."""
        return self._etcd_endpoints().get(self.leader_key())

    def _etcd(self) -> EtcdApi:
        """The endpoint that answered the last read: the release reuses the read's
        connection (no second TLS handshake on the fast path)."""
        return self._etcd_endpoints().answered

    def _etcd_endpoints(self) -> FirstAnswering:
        urls = tuple(self.desired.topology.etcd_client_urls)
        if self._etcd_client is None or self._etcd_client.urls != urls:
            self._etcd_client = FirstAnswering(self.clients, urls)
        return self._etcd_client

    def _patroni(self, node: str) -> PatroniApi:
        url = self.desired.topology.rest_api_url(node)
        if url not in self._apis:
            self._apis[url] = self.clients.patroni(url, timeout=PROBE_TIMEOUT)
        return self._apis[url]

    def _is_primary(self, node: str) -> bool:
        """GET /primary answered 200; a 503 (it is a replica now) or no answer count as failures."""
        start = time.perf_counter()
        try:
            return self._patroni(node).is_primary()
        except OperatorError:
            return False
        finally:
            if self.metrics:
                self.metrics.record_probe(time.perf_counter() - start)
