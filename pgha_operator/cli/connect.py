"""Connecting to the cluster: `dsn` (a libpq connection string naming the role's passfile)
and `psql` (psql started with the same settings in its environment). Neither puts a
password on a command line or in an environment: libpq reads it from the passfile that
`apply` and `run` keep in the state dir (passfiles/ROLE, 0600). Both only read."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psycopg.conninfo import make_conninfo

from pgha_operator.cli.args import add_state_dir_argument, controller
from pgha_operator.core.errors import OperatorError
from pgha_operator.core.passfile import login_passwords
from pgha_operator.core.render import ADMIN_USER, APP_DATABASE, APP_USER, SUPERUSER
from pgha_operator.core.spec import Cluster
from pgha_operator.core.spec.catalog import declared_logins
from pgha_operator.core.vip import client_address
from pgha_operator.shell.controller import Controller

CONNECT_TIMEOUT = 5
PSQL_FALLBACK = "/usr/lib/postgresql/15/bin/psql"

DSN_HELP = (
    "Print a libpq connection string through HAProxy as the application role `app` to its "
    "database `app` (or as --user), over TLS verified against the cluster's CA, with "
    "passfile=<state dir>/passfiles/USER in place of the password: "
    'psql "$(pgha-operator dsn)" keeps the password out of `ps`. --show-password prints '
    "it instead. The load balancer refuses the superuser (unless "
    "spec.postgres.superuserThroughLoadBalancer): use --node for it."
)
PSQL_HELP = (
    "Start psql connected as `dsn` would connect (same options), the settings in its "
    "environment (PGHOST, PGPORT, PGUSER, PGDATABASE, PGSSLMODE=verify-full, PGSSLROOTCERT, "
    "PGPASSFILE): no password in its argv or environment. Arguments after `--` go to psql, "
    'e.g. pgha-operator psql -- -c "select 1".'
)


def add_commands(command: Any) -> None:
    p = command("dsn", DSN_HELP, cmd_dsn)
    _add_target_arguments(p)
    p.add_argument(
        "--multi-host",
        action="store_true",
        help="libpq's multi-host form instead of the load balancer: every PostgreSQL node, "
        "target_session_attrs=read-write (--role primary) or prefer-standby (--role "
        "replicas), for clients that follow the primary themselves",
    )
    p.add_argument(
        "--show-password",
        action="store_true",
        help="put the password itself in the string (visible to `ps` once passed as an "
        "argument) instead of the passfile",
    )
    p = command("psql", PSQL_HELP, cmd_psql)
    _add_target_arguments(p)
    p.add_argument("psql_args", nargs=argparse.REMAINDER, help="after --: psql's own arguments")


def _add_target_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--role",
        choices=("primary", "replicas", "pooler"),
        default="primary",
        help="through the load balancer's primary port (default), its replicas port, or its "
        "pooler port (the primary's PgBouncer; spec.pooler.enabled)",
    )
    p.add_argument(
        "--user",
        default=APP_USER,
        metavar="USER",
        help=f"{APP_USER} (default), {ADMIN_USER}, {SUPERUSER} (with --node) or a declared "
        "login role of spec.postgres.roles",
    )
    p.add_argument(
        "--dbname",
        help=f"default: {APP_DATABASE} for {APP_USER}, the first declared database a declared "
        "role owns, postgres otherwise",
    )
    p.add_argument(
        "--node",
        metavar="NODE",
        help="connect to this PostgreSQL node directly instead of through HAProxy",
    )
    add_state_dir_argument(p)


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    user: str
    dbname: str
    sslrootcert: str
    passfile: Path
    # libpq's target_session_attrs with several hosts (dsn --multi-host); None: one host
    target_session_attrs: str | None = None


def resolve(args: argparse.Namespace, ctl: Controller) -> Target:
    """Where and as whom to connect, from the command's options; refuses what cannot work."""
    cluster, topo = ctl.cluster, ctl.topology
    logins = (APP_USER, ADMIN_USER, SUPERUSER, *declared_logins(cluster.spec.postgres.roles))
    if args.user not in logins:
        raise OperatorError(
            f"--user {args.user}: not a login of cluster {cluster.name} "
            f"(logins: {', '.join(logins)})"
        )
    if getattr(args, "multi_host", False):
        host, port = _multi_host(args, cluster, ctl)
    elif args.node is not None:
        if args.node not in topo.postgres:
            raise OperatorError(
                f"--node {args.node}: not a PostgreSQL node of {cluster.name} "
                f"(nodes: {', '.join(topo.postgres)})"
            )
        host, port = topo.address(args.node), topo.pg_port
    else:
        if args.user == SUPERUSER and not cluster.spec.postgres.superuser_through_load_balancer:
            raise OperatorError(
                f"the load balancer refuses {SUPERUSER} (pg_hba); use --node NODE to connect "
                f"to a node directly, or set spec.postgres.superuserThroughLoadBalancer: true"
            )
        host, port = _balanced(args, cluster, ctl)
    dbname = args.dbname or default_database(cluster, args.user)
    ca = ctl.state.client_tls().ca
    attrs = None
    if getattr(args, "multi_host", False):
        attrs = "read-write" if args.role == "primary" else "prefer-standby"
    return Target(host, port, args.user, dbname, ca, ctl.state.passfile(args.user), attrs)


def _balanced(args: argparse.Namespace, cluster: Cluster, ctl: Controller) -> tuple[str, int]:
    """The load balancers' address (their VIP, or the first) and the port of --role."""
    ports = cluster.spec.load_balancer.ports
    if args.role == "pooler" and not cluster.spec.pooler.enabled:
        raise OperatorError(
            f"--role pooler: cluster {cluster.name} has no pooler (set spec.pooler.enabled)"
        )
    port = {"primary": ports.primary, "replicas": ports.replicas, "pooler": ports.pooler}
    return client_address(cluster.spec, ctl.topology), port[args.role]


def _multi_host(args: argparse.Namespace, cluster: Cluster, ctl: Controller) -> tuple[str, int]:
    """Every node's address, comma-separated, and PostgreSQL's port (the same on each)."""
    if args.node is not None:
        raise OperatorError("--multi-host names every node: it cannot go with --node")
    if args.role == "pooler":
        raise OperatorError(
            "--multi-host connects to the nodes' PostgreSQL; the pooler is reached through "
            "the load balancer (--role pooler without --multi-host)"
        )
    if args.user == SUPERUSER and not cluster.spec.postgres.superuser_through_load_balancer:
        raise OperatorError(
            f"--multi-host is for clients: {SUPERUSER} connects to one node (--node NODE)"
        )
    topo = ctl.topology
    return ",".join(topo.address(n) for n in topo.postgres), topo.pg_port


def default_database(cluster: Cluster, user: str) -> str:
    if user == APP_USER:
        return APP_DATABASE
    owned = [
        d.name for d in cluster.spec.postgres.databases if d.owner == user and d.ensure == "present"
    ]
    return owned[0] if owned else "postgres"


def cmd_dsn(args: argparse.Namespace) -> int:
    ctl = controller(args)
    target = resolve(args, ctl)
    if args.show_password:
        print(dsn_text(target, password=_password(ctl, target.user)))
        return 0
    _warn_if_missing(target.passfile)
    print(dsn_text(target))
    return 0


def dsn_text(target: Target, password: str | None = None) -> str:
    """A libpq connection string (values quoted where they need it) that verifies the
    server's certificate against the cluster's CA and the address dialled; the password
    comes from the passfile unless given."""
    secret = {"password": password} if password is not None else {"passfile": str(target.passfile)}
    if target.target_session_attrs is not None:
        secret["target_session_attrs"] = target.target_session_attrs
    return make_conninfo(
        host=target.host,
        port=target.port,
        user=target.user,
        dbname=target.dbname,
        sslmode="verify-full",
        sslrootcert=target.sslrootcert,
        connect_timeout=CONNECT_TIMEOUT,
        **secret,
    )


def psql_environment(target: Target, base: dict[str, str]) -> dict[str, str]:
    """psql's environment: the connection settings, and no PGPASSWORD (an inherited one
    would win over the passfile and show in /proc/PID/environ)."""
    env = {k: v for k, v in base.items() if k != "PGPASSWORD"}
    env.update(
        PGHOST=target.host,
        PGPORT=str(target.port),
        PGUSER=target.user,
        PGDATABASE=target.dbname,
        PGSSLMODE="verify-full",
        PGSSLROOTCERT=target.sslrootcert,
        PGPASSFILE=str(target.passfile),
        PGCONNECT_TIMEOUT=str(CONNECT_TIMEOUT),
    )
    return env


def cmd_psql(args: argparse.Namespace) -> int:
    ctl = controller(args)
    target = resolve(args, ctl)
    _warn_if_missing(target.passfile)
    extra = list(args.psql_args)
    if extra[:1] == ["--"]:
        extra = extra[1:]
    psql = shutil.which("psql") or PSQL_FALLBACK
    sys.stdout.flush()
    os.execve(psql, [psql, *extra], psql_environment(target, dict(os.environ)))
    return 0  # not reached


def _password(ctl: Controller, user: str) -> str:
    secrets = ctl.state.secrets()
    if secrets is None:
        raise OperatorError(f"cluster {ctl.cluster.name} has no secrets yet: run apply first")
    password = login_passwords(ctl.cluster, secrets).get(user)
    if password is None:
        raise OperatorError(f"no password generated for {user} yet: run apply first")
    return password


def _warn_if_missing(passfile: Path) -> None:
    if not passfile.exists():
        print(
            f"warning: {passfile} does not exist yet: `apply` (or the running `run`) writes "
            "it; until then libpq finds no password",
            file=sys.stderr,
        )
