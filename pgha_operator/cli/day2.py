"""Day-2 commands on a running cluster: status, switchover (dsn and psql: connect.py)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from pgha_operator.cli.args import add_state_dir_argument, controller, print_progress
from pgha_operator.core.status import format_status
from pgha_operator.shell.pooler_status import format_pools, pooler_pools
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
    pools = pooler_pools(ctl)
    if pools:
        status["pooler"] = pools
    if status.get("stateError"):
        print(f"warning: {status['stateError']}", file=sys.stderr)
    if args.json:
        print(json.dumps(status, indent=2, default=str))
    else:
        print(format_status(status))
        if pools:
            print(format_pools(pools))
    return 0 if status["phase"] == "Converged" else 3


def cmd_switchover(args: argparse.Namespace) -> int:
    ctl = controller(args)
    done = switch_over(ctl, args.to, args.timeout, print_progress)
    if done.operator:
        print(f"switched over beside the running operator ({done.operator})", file=sys.stderr)
    port = ctl.cluster.spec.load_balancer.ports.primary
    print(f"{done.candidate} is primary behind :{port} after {done.seconds:.1f}s")
    return 0
