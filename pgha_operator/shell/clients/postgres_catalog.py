"""The declared roles and databases on the primary: reading them and changing them, as the
superuser on the node directly. Identifiers go through psycopg.sql (quoted); passwords are
sent as SCRAM verifiers computed on this side, never in clear."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from pgha_operator.core.catalog_actions import RoleAttributes
from pgha_operator.core.facts.catalog import CatalogFacts, DatabaseFact, RoleFact
from pgha_operator.shell.clients.errors import ComponentError
from pgha_operator.shell.clients.postgres import PostgresClient, _reason

_ROLES = """
SELECT r.rolname, r.rolcanlogin, r.rolcreatedb, r.rolconnlimit,
       ARRAY(SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
             WHERE m.member = r.oid),
       (SELECT count(*) FROM pg_shdepend d WHERE d.refclassid = 'pg_authid'::regclass
             AND d.refobjid = r.oid AND d.deptype = 'o'),
       (SELECT count(*) FROM pg_shdepend d WHERE d.refclassid = 'pg_authid'::regclass
             AND d.refobjid = r.oid AND d.deptype <> 'o')
FROM pg_roles r WHERE r.rolname = ANY(%s)
"""
# Client backends only: autovacuum workers leave when a database is dropped.
_DATABASES = """
SELECT d.datname, pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding), d.datcollate,
       (SELECT count(*) FROM pg_stat_activity a
             WHERE a.datid = d.oid AND a.backend_type = 'client backend')
FROM pg_database d WHERE d.datname = ANY(%s)
"""


class CatalogClient(PostgresClient):
    """PostgresClient plus the declared roles' and databases' reads and writes."""

    def read_catalog(
        self, roles: Sequence[str], databases: Sequence[str], extensions_of: Sequence[str]
    ) -> CatalogFacts:
        """The named roles and databases that exist; the installed extensions of those of
        `extensions_of` that exist (each asked on a short connection to that database, so
        the operator never holds a connection to a database it may have to drop)."""
        role_rows = self._read(_ROLES, (list(roles),), "reading roles")
        db_rows = self._read(_DATABASES, (list(databases),), "reading databases")
        facts = {
            r[0]: RoleFact(r[0], r[1], r[2], r[3], frozenset(r[4]), int(r[5]), int(r[6]))
            for r in role_rows
        }
        dbs = {}
        for name, owner, encoding, collate, connections in db_rows:
            installed = self._extensions(name) if name in extensions_of else None
            dbs[name] = DatabaseFact(name, owner, encoding, collate, int(connections), installed)
        return CatalogFacts(facts, dbs)

    def _extensions(self, database: str) -> frozenset[str]:
        with self._on(database) as conn:
            rows = self._run(conn, "reading extensions", "SELECT extname FROM pg_extension")
        return frozenset(r[0] for r in rows)

    def create_role_declared(
        self, role: str, attributes: RoleAttributes, password: str | None
    ) -> bool:
        """CREATE ROLE unless it exists (True when made); a login role with its password."""
        with self._on(self.dbname) as conn:
            exists = self._run(
                conn, f"creating role {role}", "SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)
            )
            if exists:
                return False
            self._run(
                conn,
                f"creating role {role}",
                _role_statement("CREATE", role, attributes, conn, password),
            )
        return True

    def alter_role_declared(
        self, role: str, attributes: RoleAttributes, password: str | None
    ) -> None:
        with self._on(self.dbname) as conn:
            self._run(
                conn,
                f"altering role {role}",
                _role_statement("ALTER", role, attributes, conn, password),
            )

    def grant_membership(self, role: str, group: str) -> None:
        statement = sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(role))
        self._execute(f"granting {group} to {role}", statement)

    def revoke_membership(self, role: str, group: str) -> None:
        statement = sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(group), sql.Identifier(role))
        self._execute(f"revoking {group} from {role}", statement)

    def drop_role(self, role: str) -> None:
        """PostgreSQL itself refuses while the role owns objects or holds privileges."""
        self._execute(
            f"dropping role {role}", sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role))
        )

    def create_database_declared(
        self, name: str, owner: str, encoding: str, locale: str | None
    ) -> bool:
        """From template0 (an encoding or locale other than template1's needs it)."""
        statement = sql.SQL("CREATE DATABASE {} OWNER {} ENCODING {} TEMPLATE template0").format(
            sql.Identifier(name), sql.Identifier(owner), sql.Literal(encoding)
        )
        if locale is not None:
            statement = sql.SQL("{} LOCALE {}").format(statement, sql.Literal(locale))
        with self._on(self.dbname) as conn:
            exists = self._run(
                conn,
                f"creating database {name}",
                "SELECT 1 FROM pg_database WHERE datname = %s",
                (name,),
            )
            if exists:
                return False
            self._run(conn, f"creating database {name}", statement)
        return True

    def set_database_owner(self, name: str, owner: str) -> None:
        statement = sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
            sql.Identifier(name), sql.Identifier(owner)
        )
        self._execute(f"changing the owner of {name}", statement)

    def create_extension(self, database: str, extension: str) -> None:
        statement = sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(extension))
        with self._on(database) as conn:
            self._run(conn, f"creating extension {extension} in {database}", statement)

    def drop_database(self, name: str) -> None:
        """Without FORCE: PostgreSQL refuses while anyone is connected to it."""
        self._execute(
            f"dropping database {name}",
            sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)),
        )

    # --- connections ----------------------------------------------------------------------

    def _on(self, database: str) -> psycopg.Connection:
        """A short connection (autocommit) to `database` on the same node, as the same user."""
        if database == self.dbname:
            return self._connect()
        other = CatalogClient(
            self.host,
            self.port,
            self.user,
            self._password,
            dbname=database,
            timeout=self.timeout,
            sslrootcert=self.sslrootcert,
        )
        return other._connect()

    def _run(
        self, conn: psycopg.Connection, what: str, statement: Any, params: tuple[Any, ...] = ()
    ) -> list[tuple[Any, ...]]:
        try:
            cur = conn.execute(statement, params or None)
            return cur.fetchall() if cur.description else []
        except psycopg.Error as exc:
            raise ComponentError(
                f"PostgreSQL {self.where}: {what}: {_reason(exc)}", url=self.where
            ) from exc

    def _execute(self, what: str, statement: Any) -> None:
        with self._on(self.dbname) as conn:
            self._run(conn, what, statement)


def _role_statement(
    verb: str, role: str, attributes: RoleAttributes, conn: psycopg.Connection, password: str | None
) -> sql.Composable:
    """CREATE/ALTER ROLE with the declared attributes; the keywords are fixed words."""
    words = [
        "LOGIN" if attributes.login else "NOLOGIN",
        "CREATEDB" if attributes.createdb else "NOCREATEDB",
        "NOSUPERUSER",
        "NOCREATEROLE",
        "NOREPLICATION",
        "NOBYPASSRLS",
    ]
    statement = sql.SQL("{} ROLE {} WITH {} CONNECTION LIMIT {}").format(
        sql.SQL(verb),
        sql.Identifier(role),
        sql.SQL(" ".join(words)),
        sql.Literal(int(attributes.connection_limit)),
    )
    if password is not None and attributes.login:
        verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256")
        statement = sql.SQL("{} PASSWORD {}").format(statement, sql.Literal(verifier.decode()))
    return statement
