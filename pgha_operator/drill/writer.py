"""The drill's writers: N clients inserting numbered rows through the load balancer.

Each client keeps one connection to `:5000`, inserts `(client_id, seq, inserted_at,
server_addr, timeline)` at a steady pace, reconnects after any error and logs every
attempt as ok, failed (certainly not committed) or unknown (sent, answer lost). The
checker later compares the acknowledged rows with what the final primary holds.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from psycopg import pq

from pgha_operator.drill import pgclient
from pgha_operator.drill.pgclient import ClientError, Outcome

SCHEMA_SQL = (
    "CREATE SCHEMA IF NOT EXISTS pgha_drill",
    """CREATE TABLE IF NOT EXISTS pgha_drill.writes (
        run_id text NOT NULL,
        client_id int NOT NULL,
        seq int NOT NULL,
        inserted_at timestamptz NOT NULL,
        server_addr inet,
        timeline int,
        PRIMARY KEY (run_id, client_id, seq))""",
    """CREATE TABLE IF NOT EXISTS pgha_drill.probe (
        node text PRIMARY KEY,
        at timestamptz NOT NULL)""",
)

# The timeline of the WAL being written now: the first 8 hex digits of its file name.
_TIMELINE = "('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int"
INSERT_SQL = (
    "INSERT INTO pgha_drill.writes VALUES "
    f"($1, $2, $3, clock_timestamp(), inet_server_addr(), {_TIMELINE}) "
    "RETURNING host(server_addr), timeline"
)


@dataclass(frozen=True)
class ClientTimeouts:
    """Client-side deadlines (seconds); libpq's own connect_timeout cannot go below 2 s."""

    connect: float = 0.5
    statement: float = 2.0


@dataclass(frozen=True)
class Attempt:
    client: int
    seq: int
    started: float  # time.monotonic()
    finished: float
    outcome: Outcome
    server: str | None = None  # the node that acknowledged (ok only)
    timeline: int | None = None
    error: str | None = None


class Writer:
    """`clients` threads inserting through `conninfo` every `interval` seconds each."""

    def __init__(
        self,
        conninfo: str,
        run_id: str,
        clients: int = 4,
        interval: float = 0.02,
        timeouts: ClientTimeouts = ClientTimeouts(),
        retry_pause: float = 0.05,
    ) -> None:
        self.conninfo = conninfo
        self.run_id = run_id
        self.clients = clients
        self.interval = interval
        self.timeouts = timeouts
        self.retry_pause = retry_pause
        self.attempts: list[Attempt] = []  # list.append is atomic: shared by the threads
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for client in range(1, self.clients + 1):
            t = threading.Thread(target=self._loop, args=(client,), name=f"writer-{client}")
            t.daemon = True
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.timeouts.connect + self.timeouts.statement + 5)

    def acked(self) -> list[Attempt]:
        return [a for a in self.attempts if a.outcome == Outcome.OK]

    def last_ok(self) -> float | None:
        return max((a.finished for a in self.acked()), default=None)

    def _loop(self, client: int) -> None:
        conn: pq.PGconn | None = None
        seq = 0
        try:
            while not self._stop.is_set():
                seq += 1
                started = time.monotonic()
                attempt, conn = self._attempt(client, seq, started, conn)
                self.attempts.append(attempt)
                pause = self.interval if attempt.outcome == Outcome.OK else self.retry_pause
                self._stop.wait(max(0.0, started + pause - time.monotonic()))
        finally:
            if conn is not None:
                conn.finish()

    def _attempt(
        self, client: int, seq: int, started: float, conn: pq.PGconn | None
    ) -> tuple[Attempt, pq.PGconn | None]:
        try:
            if conn is None:
                conn = pgclient.connect(self.conninfo, started + self.timeouts.connect)
            rows = pgclient.query(
                conn,
                INSERT_SQL,
                (self.run_id, str(client), str(seq)),
                deadline=time.monotonic() + self.timeouts.statement,
            )
        except ClientError as exc:
            if not pgclient.usable(conn):
                # Close what we abandon: a hung attempt must not stay open on a server.
                if conn is not None:
                    conn.finish()
                conn = None
            return Attempt(
                client, seq, started, time.monotonic(), exc.outcome, error=str(exc)[:200]
            ), conn
        server, timeline = rows[0] if rows else (None, None)
        return Attempt(
            client,
            seq,
            started,
            time.monotonic(),
            Outcome.OK,
            server=server,
            timeline=int(timeline) if timeline else None,
        ), conn
