"""PostgreSQL client: the operator's few SQL reads and writes (its roles and the app's
database), as the superuser on a node directly (never through the load balancer), over TLS
verified against the cluster's CA when given one. Reads, and the writes of the operator's
own roles and the app's database, go over one kept connection (the observation asks every
cycle, a SCRAM login over TLS costs ~2.5 ms of CPU and tens of ms of wall time, and a new
cluster's first write waits on those writes); the other writes use one connection per
call. The drill's own SQL writer and prober live in drill/pgclient.py: they measure."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from pgha_operator.core.facts.backup import ArchiverFacts
from pgha_operator.core.facts.controldata import parse_lsn
from pgha_operator.shell.clients import pooler_auth
from pgha_operator.shell.clients.errors import ComponentError

T = TypeVar("T")

CONNECT_TIMEOUT = 5.0  # seconds; libpq rounds up to whole seconds, 2 at least
# The superuser's login on the primary, for the observation's reads and the writes that
# follow them in the same cycle: one timeout, so they share one kept client (the clients
# keep one per server, login and timeout).
PRIMARY_TIMEOUT = 2.0

# Role attributes the operator may grant: keywords go into SQL unquoted, so only these.
ROLE_ATTRIBUTES = frozenset(
    {"LOGIN", "CREATEDB", "CREATEROLE", "REPLICATION", "SUPERUSER", "INHERIT", "NOINHERIT"}
)


class PostgresClient:
    def __init__(
        self,
        host: str,
        port: int,
        user: str,
        password: str,
        *,
        dbname: str = "postgres",
        timeout: float = CONNECT_TIMEOUT,
        sslrootcert: str | None = None,
    ) -> None:
        self.host, self.port, self.user = host, port, user
        self._password = password
        self.dbname = dbname
        # The CA file: TLS required and the server's certificate must name `host`.
        # None: libpq's default (a server started without TLS, in the clients' own tests).
        self.sslrootcert = sslrootcert
        self.timeout = timeout
        self._kept: psycopg.Connection | None = None  # for reads; made on first use

    @property
    def where(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.dbname}"

    def _connect(self, dbname: str | None = None) -> psycopg.Connection:
        tls: dict[str, str] = {}
        if self.sslrootcert is not None:
            tls = {"sslmode": "verify-full", "sslrootcert": self.sslrootcert}
        try:
            return psycopg.connect(
                **tls,
                host=self.host,
                port=self.port,
                user=self.user,
                password=self._password,
                dbname=dbname or self.dbname,
                connect_timeout=max(2, round(self.timeout)),
                autocommit=True,
            )
        except psycopg.Error as exc:
            raise ComponentError(
                f"PostgreSQL {self.where}: {_reason(exc)}", url=self.where
            ) from exc

    def _read(self, query: str, params: tuple[Any, ...], what: str) -> list[tuple[Any, ...]]:
        """One read on the kept connection. A connection the server dropped meanwhile (a
        restart, a switchover) is made again once, so a read never answers from the past."""
        return self._on_kept(lambda conn: conn.execute(query, params).fetchall(), what)

    def _on_kept(self, work: Callable[[psycopg.Connection], T], what: str) -> T:
        """`work` on the kept connection (autocommit), made again once when the server
        dropped it. Only for reads and for writes that look before they act (a write
        retried after its answer was lost finds its effect and does nothing)."""
        for attempt in (1, 2):
            if self._kept is None or self._kept.closed:
                self._kept = self._connect()
            try:
                return work(self._kept)
            except psycopg.OperationalError as exc:
                self.close()
                if attempt == 2:
                    raise ComponentError(
                        f"PostgreSQL {self.where}: {what}: {_reason(exc)}", url=self.where
                    ) from exc
            except psycopg.Error as exc:
                raise ComponentError(
                    f"PostgreSQL {self.where}: {what}: {_reason(exc)}", url=self.where
                ) from exc
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._kept is not None:
            self._kept.close()
            self._kept = None

    def received_wal(self) -> tuple[bool, int | None]:
        """(in recovery, pg_last_wal_receive_lsn()): WAL a replica received and flushed,
        kept after its walreceiver stopped; None before it ever streamed."""
        rows = self._read(
            "SELECT pg_is_in_recovery(), pg_last_wal_receive_lsn()::text",
            (),
            "reading WAL position",
        )
        in_recovery, lsn = rows[0]
        return bool(in_recovery), parse_lsn(lsn) if lsn else None

    def existing_roles(self, names: Sequence[str]) -> frozenset[str]:
        """Which of `names` exist as roles. Raises ComponentError if the server does not answer."""
        rows = self._read(
            "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (list(names),), "reading roles"
        )
        return frozenset(r[0] for r in rows)

    def archiver(self) -> tuple[ArchiverFacts, int]:
        """pg_stat_archiver (times as Unix seconds) and the database's system identifier.
        Raises ComponentError if the server does not answer."""
        rows = self._read(
            "SELECT archived_count, last_archived_wal, extract(epoch FROM last_archived_time),"
            " failed_count, last_failed_wal, extract(epoch FROM last_failed_time),"
            " (SELECT system_identifier FROM pg_control_system())"
            " FROM pg_stat_archiver",
            (),
            "reading pg_stat_archiver",
        )
        count, wal, at, failed, failed_wal, failed_at, system_id = rows[0]
        archiver = ArchiverFacts(
            archived_count=int(count),
            last_archived_wal=wal,
            last_archived_time=None if at is None else float(at),
            failed_count=int(failed),
            last_failed_wal=failed_wal,
            last_failed_time=None if failed_at is None else float(failed_at),
        )
        return archiver, int(system_id)

    def existing_databases(self, names: Sequence[str]) -> frozenset[str]:
        """Which of `names` exist as databases. Raises ComponentError if the server does not
        answer."""
        rows = self._read(
            "SELECT datname FROM pg_database WHERE datname = ANY(%s)",
            (list(names),),
            "reading databases",
        )
        return frozenset(r[0] for r in rows)

    def create_database(self, name: str, owner: str) -> bool:
        """CREATE DATABASE owned by `owner` unless it exists; True when it was created."""
        statement = sql.SQL("CREATE DATABASE {} OWNER {}").format(
            sql.Identifier(name), sql.Identifier(owner)
        )

        def create(conn: psycopg.Connection) -> bool:  # autocommit: no transaction around it
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                return False
            conn.execute(statement)
            return True

        return self._on_kept(create, f"creating database {name}")

    def create_role(self, role: str, password: str, attributes: Sequence[str] = ("LOGIN",)) -> bool:
        """CREATE ROLE with a password unless it exists; True when it was created."""
        unknown = sorted(set(attributes) - ROLE_ATTRIBUTES)
        if unknown:
            raise ValueError(f"unknown role attributes {unknown}")
        statement = sql.SQL("CREATE ROLE {} {} PASSWORD {}").format(
            sql.Identifier(role),
            sql.SQL(" ").join(sql.SQL(a) for a in attributes),
            sql.Literal(password),
        )

        def create(conn: psycopg.Connection) -> bool:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                return False
            conn.execute(statement)
            return True

        return self._on_kept(create, f"creating role {role}")

    def set_up_pooler_auth(self, role: str, password: str) -> None:
        """PgBouncer's auth_query function in every database, then its role (pooler_auth)."""
        try:
            with self._connect() as conn:
                databases = pooler_auth.connectable_databases(conn)
            for name in databases:
                with self._connect(dbname=name) as conn:
                    pooler_auth.install_function(conn, role)
            with self._connect() as conn:
                pooler_auth.create_login(conn, role, password)
        except psycopg.Error as exc:
            raise ComponentError(
                f"PostgreSQL {self.where}: setting up the pooler's role {role}: {_reason(exc)}",
                url=self.where,
            ) from exc

    def set_password(self, role: str, password: str) -> None:
        """ALTER ROLE ... PASSWORD with the SCRAM verifier libpq computes on this side, so the
        password itself never reaches the server's statement log or pg_stat_activity."""
        with self._connect() as conn:
            try:
                verifier = conn.pgconn.encrypt_password(
                    password.encode(), role.encode(), b"scram-sha-256"
                )
                conn.execute(
                    sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                        sql.Identifier(role), sql.Literal(verifier.decode())
                    )
                )
            except psycopg.Error as exc:
                raise ComponentError(
                    f"PostgreSQL {self.where}: setting the password of {role}: {_reason(exc)}",
                    url=self.where,
                ) from exc


def _reason(exc: psycopg.Error) -> str:
    # libpq's messages repeat the address and span lines; the first line says why.
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
