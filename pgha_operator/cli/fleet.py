"""`run -f DIR`: one operator for every cluster whose manifest is in DIR (shell/fleet.py),
under systemd a Type=notify service (READY, WATCHDOG: shell/sd_notify.py)."""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Callable
from pathlib import Path

from pgha_operator.cli.args import manifest_files
from pgha_operator.core.errors import OperatorError
from pgha_operator.shell.controller import Controller
from pgha_operator.shell.fleet import ClusterLoop, Fleet
from pgha_operator.shell.metrics import OperatorMetrics, metrics_response
from pgha_operator.shell.sd_notify import Notifier
from pgha_operator.shell.status_http import STALE_AFTER, open_endpoint


def add_fleet_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--state-root",
        type=Path,
        metavar="DIR",
        help="with -f DIR (every cluster of the directory): each cluster's state dir is "
        "DIR/<cluster> (default /var/lib/pgha-operator as root)",
    )
    p.add_argument(
        "--hung-after",
        type=float,
        default=STALE_AFTER,
        metavar="S",
        help=f"under systemd: a cluster loop without a completed cycle for S seconds is hung "
        f"and the watchdog is no longer fed (default {STALE_AFTER:.0f})",
    )


def wants_fleet(args: argparse.Namespace) -> bool:
    """`run -f DIR` without --cluster or --state-dir manages every cluster of DIR; `-f FILE`
    (or a directory with --cluster / --state-dir) is one cluster, as before."""
    files = args.files or []
    one_cluster = args.cluster or args.state_dir
    if args.state_root is not None and (
        one_cluster or len(files) != 1 or not Path(files[0]).is_dir()
    ):
        raise OperatorError(
            "--state-root goes with one -f DIRECTORY (and no --cluster/--state-dir)"
        )
    return len(files) == 1 and Path(files[0]).is_dir() and not one_cluster


def controller_maker(
    metrics: OperatorMetrics,
) -> Callable[[str, str, Path | None], ClusterLoop]:
    """Every cluster's Controller records into the one registry (series carry `cluster`)."""

    def make_controller(source: str, name: str, state_dir: Path | None) -> ClusterLoop:
        def progress(action: object) -> None:
            print(f"[{name}] -> {getattr(action, 'describe', action)}", flush=True)

        return Controller(
            [source], state_dir=state_dir, cluster_name=name, progress=progress, metrics=metrics
        )

    return make_controller


def cmd_run_fleet(args: argparse.Namespace) -> int:
    directory = Path(manifest_files(args)[0])
    metrics = OperatorMetrics()
    fleet = Fleet(directory, controller_maker(metrics), args.state_root)
    # A taken port fails here, before any cluster's loop starts.
    server = (
        open_endpoint(
            args.listen,
            args.operator_dir,
            fleet.snapshot,
            routes={"/metrics": lambda: metrics_response(metrics)},
        )
        if args.listen
        else None
    )
    notifier = Notifier.from_environment()
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"operator for every cluster in {directory} running", flush=True)
    if server:
        server.start()
        print(f"status: {server.url}/ (also /status, /metrics, /healthz, /readyz)", flush=True)
    try:
        fleet.run(stop, notifier, args.hung_after)
    finally:
        if server:
            server.stop()
    print("operator stopped; the clusters keep running", flush=True)
    return 0
