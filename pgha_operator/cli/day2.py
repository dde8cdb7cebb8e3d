"""Day-2 commands on a running cluster: status, dsn, switchover."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from psycopg.conninfo import make_conninfo

from pgha_operator.cli.args import add_state_dir_argument, controller, print_progress
from pgha_operator.core.errors import OperatorError
from pgha_operator.core.render import ADMIN_USER, APP_DATABASE, APP_USER, SUPERUSER, Secrets
from pgha_operator.core.status import format_status
from pgha_operator.shell.switchover import switch_over

# What the running operator saw beats what `status` works out on its own.
OPERATOR_KEYS = ("lastDecision", "manifestError", "events", "observedGeneration")


def add_commands(command: Any) -> None:
    p = command(
        "status",
        "Show machines, etcd members, Patroni members, HAProxy backends, phase and the last "
        "decision. Writes nothing.",
        cmd_status,
    )
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    add_state_dir_argument(p)
    p = command(
        "dsn",
        "Print a libpq connection string through HAProxy, password included, as the "
        "application role `app` to its database `app`, over TLS verified against the "
        'cluster\'s CA: psql "$(pgha-operator dsn)". The load balancer refuses the superuser '
        "(unless spec.postgres.superuserThroughLoadBalancer): use --node for it.",
        cmd_dsn,
    )
    p.add_argument("--role", choices=("primary", "replicas"), default="primary")
    p.add_argument("--user", choices=(APP_USER, ADMIN_USER, SUPERUSER), default=APP_USER)
    p.add_argument(
        "--node",
        metavar="NODE",
        help="connect to this PostgreSQL node directly instead of through HAProxy",
    )
    add_state_dir_argument(p)
    p = command(
        "switchover",
        "Hand the primary role to a healthy replica through Patroni's REST API and wait until "
        "HAProxy's primary port routes to it. Refused while another switchover runs; beside "
        "a running operator it goes ahead and that operator starts no switchover meanwhile.",
        cmd_switchover,
    )
    p.add_argument("--to", metavar="NODE", help="the new primary (default: the best replica)")
    p.add_argument("--timeout", type=float, default=60, metavar="S", help="default 60")
    add_state_dir_argument(p)


def cmd_status(args: argparse.Namespace) -> int:
    ctl = controller(args, fall_back_to_last_applied=True)
    status = ctl.cycle(act=False).status
    saved = ctl.state.read_status()
    if saved and ctl.state.operator_running():
        for key in OPERATOR_KEYS:
            if key in saved:
                status[key] = saved[key]
    if status.get("stateError"):
        print(f"warning: {status['stateError']}", file=sys.stderr)
    if args.json:
        print(json.dumps(status, indent=2, default=str))
    else:
        print(format_status(status))
    return 0 if status["phase"] == "Converged" else 3


def cmd_dsn(args: argparse.Namespace) -> int:
    ctl = controller(args)
    secrets = ctl.state.secrets()
    if secrets is None:
        raise OperatorError(f"cluster {ctl.cluster.name} has no secrets yet: run apply first")
    topo = ctl.topology
    if args.node is not None:
        if args.node not in topo.postgres:
            raise OperatorError(
                f"--node {args.node}: not a PostgreSQL node of {ctl.cluster.name} "
                f"(nodes: {', '.join(topo.postgres)})"
            )
        host, port = topo.address(args.node), topo.pg_port
    else:
        through = ctl.cluster.spec.postgres.superuser_through_load_balancer
        if args.user == SUPERUSER and not through:
            raise OperatorError(
                f"the load balancer refuses {SUPERUSER} (pg_hba); use --node NODE to connect "
                f"to a node directly, or set spec.postgres.superuserThroughLoadBalancer: true"
            )
        ports = ctl.cluster.spec.load_balancer.ports
        host = topo.address(topo.loadbalancers[0])
        port = ports.primary if args.role == "primary" else ports.replicas
    print(dsn_text(host, port, args.user, secrets, ctl.state.client_tls().ca))
    return 0


def dsn_text(host: str, port: int, user: str, secrets: Secrets, ca: str) -> str:
    """A libpq connection string (values quoted where they need it) that verifies the
    server's certificate against the cluster's CA and the address dialled."""
    password = {
        APP_USER: secrets.app_password,
        ADMIN_USER: secrets.admin_password,
        SUPERUSER: secrets.superuser_password,
    }[user]
    return make_conninfo(
        host=host,
        port=port,
        user=user,
        password=password,
        dbname=APP_DATABASE if user == APP_USER else "postgres",
        sslmode="verify-full",
        sslrootcert=ca,
        connect_timeout=5,
    )


def cmd_switchover(args: argparse.Namespace) -> int:
    ctl = controller(args)
    done = switch_over(ctl, args.to, args.timeout, print_progress)
    if done.operator:
        print(f"switched over beside the running operator ({done.operator})", file=sys.stderr)
    port = ctl.cluster.spec.load_balancer.ports.primary
    print(f"{done.candidate} is primary behind :{port} after {done.seconds:.1f}s")
    return 0
