"""PgBouncer's admin console (spec.pooler): SHOW POOLS on one node's pooler, logged in as
the pooler's own role (a stats user), over TLS verified against the cluster's CA."""

from __future__ import annotations

from typing import Any

import psycopg

from pgha_operator.shell.clients.errors import ComponentError

CONNECT_TIMEOUT = 2  # libpq's minimum
ADMIN_DATABASE = "pgbouncer"  # PgBouncer's console


def show_pools(
    host: str, port: int, user: str, password: str, sslrootcert: str
) -> list[dict[str, Any]]:
    """SHOW POOLS as one mapping per pool (PgBouncer's column names). Raises ComponentError."""
    where = f"pgbouncer://{user}@{host}:{port}"
    try:
        # The console speaks the simple query protocol only: a client-side cursor, and
        # autocommit (it refuses BEGIN).
        with psycopg.connect(
            host=host,
            port=port,
            user=user,
            password=password,
            dbname=ADMIN_DATABASE,
            sslmode="verify-full",
            sslrootcert=sslrootcert,
            connect_timeout=CONNECT_TIMEOUT,
            autocommit=True,
            cursor_factory=psycopg.ClientCursor,
        ) as conn:
            cur = conn.execute("SHOW POOLS")
            names = [c.name for c in cur.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    except psycopg.Error as exc:
        lines = str(exc).strip().splitlines()
        reason = lines[0] if lines else type(exc).__name__
        raise ComponentError(f"{where}: {reason}", url=where) from exc
