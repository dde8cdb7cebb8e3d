"""Commands that act as the cluster's operator: apply, run, destroy."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from pgha_operator.cli.args import (
    add_state_dir_argument,
    controller,
    print_progress,
    print_warnings,
)
from pgha_operator.cli.endpoint import add_operator_dir_argument
from pgha_operator.cli.fleet import add_fleet_arguments, cmd_run_fleet, wants_fleet
from pgha_operator.cli.logs import add_log_format_argument
from pgha_operator.cli.logs import configure as configure_logs
from pgha_operator.cli.progress import ApplyProgress
from pgha_operator.core.render.haproxy import STATS_USER
from pgha_operator.core.spec import Cluster
from pgha_operator.core.vip import client_address
from pgha_operator.shell.backups import delete_backups, kept_backups, mark_destroyed
from pgha_operator.shell.controller import Controller
from pgha_operator.shell.cycle import CycleReport
from pgha_operator.shell.loops import DecisionLog
from pgha_operator.shell.metrics import OperatorMetrics, metrics_response
from pgha_operator.shell.status_http import open_endpoint

EXIT_INVALID = 2


def add_commands(command: Any) -> None:
    p = command(
        "apply",
        "Reconcile until the cluster matches the manifest (exit 0) or the timeout passes "
        "(exit 1, saying what is not converged). Prints one line per action.",
        cmd_apply,
    )
    p.add_argument("--timeout", type=float, default=300, metavar="S", help="default 300")
    add_state_dir_argument(p)
    add_log_format_argument(p)
    p = command(
        "run",
        "Keep the cluster converged forever: resync every few seconds and react to manifest "
        "edits within about a second. Any number may run for one cluster (on one host or "
        "several): one leads through a lease in the cluster's etcd, the others stand by and "
        "take over within seconds. Ctrl-C stops the operator, not the cluster.",
        cmd_run,
    )
    p.add_argument(
        "--listen",
        metavar="ADDR:PORT",
        help="also serve the status (read-only): GET / (a page), /status, /healthz, /readyz, "
        "/metrics (Prometheus); e.g. 127.0.0.1:8800. Plain HTTP and open on a loopback "
        "address; on any other one HTTPS with the operator's certificate and, but for "
        "/healthz and /readyz, its token (pgha-operator token). Off by default",
    )
    add_operator_dir_argument(p)
    add_state_dir_argument(p)
    add_log_format_argument(p)
    add_fleet_arguments(p)  # run -f DIR: every cluster of the directory (cli/fleet.py)
    p = command(
        "destroy",
        "Stop every service of the cluster and delete its machines, data and secrets.",
        cmd_destroy,
    )
    p.add_argument("--yes", action="store_true", help="required: this deletes all data")
    p.add_argument(
        "--delete-backups",
        action="store_true",
        help="also delete the cluster's backups and archived WAL (spec.backup); kept otherwise",
    )
    add_state_dir_argument(p)


def cmd_apply(args: argparse.Namespace) -> int:
    log_format = configure_logs(args.log_format)
    progress = ApplyProgress(sys.stdout)
    ctl = controller(args, progress=progress.action)
    print_warnings(ctl.loaded.warnings)
    ctl.prepare()
    progress.start()
    try:
        report = ctl.apply(args.timeout, on_cycle=on_cycle(ctl, progress, log_format))
    finally:
        progress.close()
        ctl.unlock()
    if report.converged:
        print(f"cluster {ctl.cluster.name} converged")
        print(connect_hint(ctl))
        return 0
    print(f"not converged ({report.phase}): {report.decision}", file=sys.stderr)
    for c in report.status["conditions"]:
        if c["status"] != "True":
            print(f"  {c['type']}: {c['reason']}", file=sys.stderr)
    return 1


def connect_hint(ctl: Controller) -> str:
    topo = ctl.topology
    ports = ctl.cluster.spec.load_balancer.ports
    address = client_address(ctl.cluster.spec, topo)  # the VIP when there is one
    stats = topo.address(topo.loadbalancers[0])  # each load balancer's own page
    return (
        f"connect: pgha-operator psql -f {' -f '.join(ctl.paths)}   "
        f"writes {address}:{ports.primary}, reads {address}:{ports.replicas}, "
        f"stats http://{stats}:{ports.stats}/ (user {STATS_USER}, password: stats_password "
        "in the state dir's secrets.yaml)"
    )


def cmd_run(args: argparse.Namespace) -> int:
    configure_logs(args.log_format)
    metrics = OperatorMetrics()
    if wants_fleet(args):
        return cmd_run_fleet(args)
    # A taken port fails here, before the operator takes its lock or touches anything.
    server = (
        open_endpoint(
            args.listen,
            args.operator_dir,
            lambda: ctl.last_cycle,
            routes={"/metrics": lambda: metrics_response(metrics)},
        )
        if args.listen
        else None
    )
    try:
        ctl = controller(args, progress=print_progress, metrics=metrics)
        print_warnings(ctl.loaded.warnings)
        ctl.prepare(standby=True)  # another operator may lead: this one then stands by
        stop = threading.Event()

        def on_signal(signum: int, frame: object) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        print(f"operator for cluster {ctl.cluster.name} running (state {ctl.state_dir})")
        print(connect_hint(ctl), flush=True)
        if server:
            server.start()
            print(f"status: {server.url}/ (also /status, /healthz, /readyz, /metrics)", flush=True)
            if server.access:
                print(
                    f"  HTTPS with {args.operator_dir}/endpoint.crt; the token: "
                    "pgha-operator token",
                    flush=True,
                )
        try:
            ctl.run(stop)
        finally:
            ctl.unlock()
    finally:
        if server:
            server.stop()
    print("operator stopped; the cluster keeps running", flush=True)
    return 0


def print_left(machine: str, notes: list[str]) -> None:
    for note in notes:
        print(f"left on {machine}: {note}")


def on_cycle(
    ctl: Controller, progress: ApplyProgress, log_format: str
) -> Callable[[CycleReport], None]:
    """apply's progress line; in JSON, the decision lines too (for whatever reads them)."""
    if log_format != "json":
        return progress.cycle
    decisions = DecisionLog(ctl)

    def both(report: CycleReport) -> None:
        progress.cycle(report)
        decisions(report)

    return both


def cmd_destroy(args: argparse.Namespace) -> int:
    if not args.yes:
        print(
            "destroy deletes every machine, database and secret of the cluster; "
            "add --yes to confirm",
            file=sys.stderr,
        )
        return EXIT_INVALID
    # The running cluster's definition decides what to destroy, even under a refused edit.
    ctl = controller(args, fall_back_to_last_applied=True)
    ctl.lock("destroy")
    try:
        if not args.delete_backups:
            mark_destroyed(ctl)  # a new cluster of this name may continue the stanza
        removed = ctl.destroy(on_left=print_left)
    finally:
        ctl.unlock()
    for name in removed:
        print(f"destroyed machine {name}")
    print(f"cluster {ctl.cluster.name} destroyed; state dir {ctl.state_dir} removed")
    print_backups_fate(ctl.cluster, args.delete_backups)
    return 0


def print_backups_fate(cluster: Cluster, delete: bool) -> None:
    """The repository outlives the cluster unless asked: say where it is, or what went."""
    repository = kept_backups(cluster)
    if repository is None:
        return
    if delete:
        for path in delete_backups(cluster):
            print(f"deleted backups {path}")
        return
    print(
        f"backups kept in {repository} (pgBackRest stanza {cluster.name}); "
        "`destroy --delete-backups` deletes them"
    )
