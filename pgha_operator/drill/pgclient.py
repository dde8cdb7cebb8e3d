"""A PostgreSQL client with client-side deadlines below libpq's 2 s connect_timeout floor.

libpq (and psycopg, which copies it) never waits less than 2 s for a connection, and a
statement sent to a frozen server waits forever. The drill needs both shorter: a client
that hangs 2 s on a dead server measures its own timeout, not the cluster. So this drives
libpq's non-blocking API (`psycopg.pq`) with `select` and its own deadline, and when the
deadline passes it closes the connection (PQfinish closes the socket): an abandoned
attempt must not leave a backend stuck on the server (LAB-NOTES).
"""

from __future__ import annotations

import select
import time
from collections.abc import Sequence
from enum import StrEnum

import psycopg
from psycopg import pq

# Errors whose connection is gone: the server may have committed before it went away.
_CONNECTION_CLASSES = ("08", "57")


class Outcome(StrEnum):
    OK = "ok"
    FAILED = "failed"  # certainly not committed: refused before or by the server
    UNKNOWN = "unknown"  # sent, answer lost: may or may not have committed


class ClientError(Exception):
    def __init__(self, message: str, outcome: Outcome, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.sqlstate = sqlstate


def _wait(sock: int, *, read: bool, deadline: float) -> bool:
    """Wait until the socket is ready or the deadline passes (False)."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return False
    rlist, wlist = ([sock], []) if read else ([], [sock])
    ready = select.select(rlist, wlist, [], remaining)
    return bool(ready[0] or ready[1])


def _message(conn: pq.PGconn) -> str:
    return conn.get_error_message().strip() or "connection failed"


def connect(conninfo: str, deadline: float) -> pq.PGconn:
    """A connection, or ClientError(FAILED) once `deadline` (time.monotonic()) passes."""
    conn = pq.PGconn.connect_start(conninfo.encode())
    try:
        if conn.status == pq.ConnStatus.BAD:
            raise ClientError(_message(conn), Outcome.FAILED)
        status = pq.PollingStatus.WRITING
        while status != pq.PollingStatus.OK:
            if status == pq.PollingStatus.FAILED:
                raise ClientError(_message(conn), Outcome.FAILED)
            # libpq may switch sockets between attempts: ask for the current one each time.
            if not _wait(conn.socket, read=status == pq.PollingStatus.READING, deadline=deadline):
                raise ClientError("connect: client deadline passed", Outcome.FAILED)
            status = conn.connect_poll()
        conn.nonblocking = 1
        return conn
    except BaseException:
        conn.finish()
        raise


def query(
    conn: pq.PGconn, sql: str, params: Sequence[str | None] = (), *, deadline: float
) -> list[tuple[str | None, ...]]:
    """Run one statement (text parameters and results). On any error the outcome says
    whether the statement may have committed; on a lost connection or a passed deadline
    the caller must close the connection (`conn.finish()`)."""
    encoded = [None if p is None else p.encode() for p in params]
    try:
        conn.send_query_params(sql.encode(), encoded)
    except psycopg.OperationalError as exc:  # a broken connection: no complete message left
        raise ClientError(f"send: {exc}", Outcome.FAILED) from None
    try:
        while conn.flush() != 0:
            if not _wait(conn.socket, read=False, deadline=deadline):
                raise ClientError("query: client deadline passed", Outcome.UNKNOWN)
        result: pq.PGresult | None = None
        while True:
            conn.consume_input()
            while not conn.is_busy():
                res = conn.get_result()
                if res is None:
                    return _rows(conn, result)
                result = res
            if not _wait(conn.socket, read=True, deadline=deadline):
                raise ClientError("query: client deadline passed", Outcome.UNKNOWN)
    except psycopg.OperationalError as exc:  # from flush/consume_input: the socket is gone
        raise ClientError(f"connection lost: {exc}", Outcome.UNKNOWN) from None


def _rows(conn: pq.PGconn, result: pq.PGresult | None) -> list[tuple[str | None, ...]]:
    if result is None:
        raise ClientError("no result", Outcome.UNKNOWN)
    if result.status in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK):
        return [
            tuple(
                None if (v := result.get_value(r, c)) is None else bytes(v).decode()
                for c in range(result.nfields)
            )
            for r in range(result.ntuples)
        ]
    raw_state = result.error_field(pq.DiagnosticField.SQLSTATE)
    sqlstate = raw_state.decode() if raw_state else None
    message = (result.error_message or b"").decode(errors="replace").strip()
    lost = conn.status == pq.ConnStatus.BAD or (sqlstate or "")[:2] in _CONNECTION_CLASSES
    raise ClientError(message or "error", Outcome.UNKNOWN if lost else Outcome.FAILED, sqlstate)


def usable(conn: pq.PGconn | None) -> bool:
    """Still connected and idle: worth reusing after an error the server reported."""
    return (
        conn is not None
        and conn.status == pq.ConnStatus.OK
        and conn.transaction_status == pq.TransactionStatus.IDLE
    )
