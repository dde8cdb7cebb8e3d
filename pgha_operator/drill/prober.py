"""The drill's prober: asks every PostgreSQL node directly, every 100 ms, whether it
accepts writes (`pg_is_in_recovery()`, then a write to a scratch table).

It bypasses the load balancer on purpose: two nodes accepting writes at the same moment
is a split brain whether or not HAProxy routes to both, and only asking each node shows it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from psycopg import pq

from pgha_operator.drill import pgclient
from pgha_operator.drill.pgclient import ClientError, Outcome

READ_ONLY_SQLSTATE = "25006"
PROBE_WRITE_SQL = (
    "INSERT INTO pgha_drill.probe (node, at) VALUES ($1, clock_timestamp()) "
    "ON CONFLICT (node) DO UPDATE SET at = excluded.at"
)


class NodeState(StrEnum):
    WRITABLE = "writable"  # the write committed
    READ_ONLY = "read-only"  # in recovery, or the server refused the write
    UNREACHABLE = "unreachable"  # no connection
    UNKNOWN = "unknown"  # no answer within the deadline (frozen, or a commit that hangs)


@dataclass(frozen=True)
class Probe:
    node: str
    sent: float  # time.monotonic() when the question left
    done: float  # ... and when the answer (or the deadline) came
    state: NodeState


class Prober:
    def __init__(
        self,
        conninfos: Mapping[str, str],
        interval: float = 0.1,
        connect_timeout: float = 0.5,
        statement_timeout: float = 1.0,
    ) -> None:
        self.conninfos = dict(conninfos)
        self.interval = interval
        self.connect_timeout = connect_timeout
        self.statement_timeout = statement_timeout
        self.probes: list[Probe] = []
        self._latest: dict[str, Probe] = {}
        self._last_writable: float | None = None
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for node in self.conninfos:
            t = threading.Thread(target=self._loop, args=(node,), name=f"probe-{node}")
            t.daemon = True
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.connect_timeout + 2 * self.statement_timeout + 5)

    def writable_now(self, within: float = 1.0) -> set[str]:
        """Nodes whose latest probe, at most `within` seconds old, committed a write."""
        now = time.monotonic()
        return {
            p.node
            for p in list(self._latest.values())
            if p.state == NodeState.WRITABLE and now - p.done <= within
        }

    def latest(self, node: str) -> Probe | None:
        return self._latest.get(node)

    def quiet_for(self) -> float:
        """Seconds since any node last committed a probe write (since start if none),
        counting only while every node is being asked (each has a probe since then)."""
        last = self._last_writable if self._last_writable is not None else self._started
        if any(p.sent < last for p in list(self._latest.values())) or not self._latest:
            return 0.0
        return time.monotonic() - last

    def _loop(self, node: str) -> None:
        conn: pq.PGconn | None = None
        try:
            while not self._stop.is_set():
                sent = time.monotonic()
                state, conn = self._probe(node, conn)
                probe = Probe(node, sent, time.monotonic(), state)
                self.probes.append(probe)
                self._latest[node] = probe
                if state == NodeState.WRITABLE:
                    self._last_writable = max(self._last_writable or 0.0, probe.done)
                self._stop.wait(max(0.0, sent + self.interval - time.monotonic()))
        finally:
            if conn is not None:
                conn.finish()

    def _probe(self, node: str, conn: pq.PGconn | None) -> tuple[NodeState, pq.PGconn | None]:
        try:
            if conn is None:
                conn = pgclient.connect(
                    self.conninfos[node], time.monotonic() + self.connect_timeout
                )
        except ClientError:
            return NodeState.UNREACHABLE, None
        try:
            deadline = time.monotonic() + self.statement_timeout
            rows = pgclient.query(conn, "SELECT pg_is_in_recovery()", deadline=deadline)
            if rows and rows[0][0] == "t":
                return NodeState.READ_ONLY, conn
            pgclient.query(conn, PROBE_WRITE_SQL, (node,), deadline=deadline)
            return NodeState.WRITABLE, conn
        except ClientError as exc:
            if pgclient.usable(conn):
                # The server answered. 25006: read-only transaction (being demoted, or
                # default_transaction_read_only); anything else is not a clear answer.
                refused = exc.sqlstate == READ_ONLY_SQLSTATE
                return (NodeState.READ_ONLY if refused else NodeState.UNKNOWN), conn
            conn.finish()
            lost = exc.outcome == Outcome.UNKNOWN
            return (NodeState.UNKNOWN if lost else NodeState.UNREACHABLE), None
