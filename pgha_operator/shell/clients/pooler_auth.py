"""The SQL behind PgBouncer's auth_query (spec.pooler), run as the superuser on the primary.

auth_query runs in the database a client asks for, so the lookup function lives in every
database that takes connections, template1 included (a database made later from it has
it too). Its EXECUTE is public, but it answers only a session logged in as the pooler's
role, and never for a superuser or a replication role: those cannot log in through the
pooler. The role is made last, so its presence says the functions are all in place.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from pgha_operator.core.render.pgbouncer import AUTH_SCHEMA

FUNCTION = sql.SQL(
    """CREATE OR REPLACE FUNCTION {schema}.user_secret(p_user text, OUT usename text,
    OUT passwd text) RETURNS SETOF record LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog AS $body$
  SELECT rolname::text,
         CASE WHEN rolvaliduntil < now() THEN NULL ELSE rolpassword END
    FROM pg_catalog.pg_authid
   WHERE rolname = p_user AND rolcanlogin AND NOT rolsuper AND NOT rolreplication
     AND session_user = {role}
$body$"""
)


def connectable_databases(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute("SELECT datname FROM pg_database WHERE datallowconn ORDER BY 1")
    return [r[0] for r in rows.fetchall()]


def install_function(conn: psycopg.Connection, role: str) -> None:
    """The schema and the lookup function in the database `conn` is connected to."""
    schema = sql.Identifier(AUTH_SCHEMA)
    with conn.transaction():
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
        conn.execute(FUNCTION.format(schema=schema, role=sql.Literal(role)))
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO PUBLIC").format(schema))
        conn.execute(
            sql.SQL("GRANT EXECUTE ON FUNCTION {}.user_secret(text) TO PUBLIC").format(schema)
        )


def create_login(conn: psycopg.Connection, role: str, password: str) -> bool:
    """The pooler's role (LOGIN, nothing else) with the SCRAM verifier computed here."""
    if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
        return False
    verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256")
    conn.execute(
        sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(verifier.decode())
        )
    )
    return True
