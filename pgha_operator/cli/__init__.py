"""The command line: `pgha-operator COMMAND --help` says what each command does."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import structlog

from pgha_operator import __version__
from pgha_operator.cli.args import (
    DEFAULT_MANIFEST,
    add_manifest_arguments,
    add_state_dir_argument,
)
from pgha_operator.cli.ssh import add_ssh_command
from pgha_operator.core import topology
from pgha_operator.core.actions import Action, Switchover
from pgha_operator.core.conditions import PRIMARY_BACKEND
from pgha_operator.core.desired import PLACEHOLDER_SECRETS, build_desired
from pgha_operator.core.errors import OperatorError
from pgha_operator.core.facts.observed import Observed
from pgha_operator.core.plan import plan
from pgha_operator.core.plan.patroni import switchover_candidate
from pgha_operator.core.render import ADMIN_USER, SUPERUSER
from pgha_operator.core.spec import Cluster, ManifestError, load
from pgha_operator.core.status import format_status
from pgha_operator.drill.cli import add_drill_command
from pgha_operator.shell.controller import Controller, load_one
from pgha_operator.shell.execute import execute
from pgha_operator.shell.hosts.base import HostError
from pgha_operator.shell.status_file import read_status
from pgha_operator.shell.status_http import StatusServer, parse_listen

EXIT_INVALID = 2

DESCRIPTION = """\
Keep a highly available PostgreSQL cluster (Patroni + etcd + HAProxy) converged with the
YAML manifests you edit. Start with `pgha-operator apply` (or `run` to keep it converged),
then `status` and `dsn`. Every command takes -f PATH (a manifest file or a directory;
default manifests/demo.yaml)."""


def main(argv: Sequence[str] | None = None) -> int:
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S"),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_INVALID
    try:
        return int(args.func(args) or 0)
    except ManifestError as exc:
        print("manifest refused, nothing was changed:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_INVALID
    except (OperatorError, HostError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `pgha-operator status | head`
        sys.stderr.close()
        return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pgha-operator",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    def command(name: str, help_text: str, func: object) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func)
        add_manifest_arguments(p)
        return p

    state_dir = add_state_dir_argument

    command(
        "validate",
        "Check manifests without touching anything; exit 2 naming file, field and reason.",
        cmd_validate,
    )

    p = command(
        "plan",
        "Show the actions the next cycle would take, in order (against the live cluster for "
        "the local provider; against an empty one otherwise).",
        cmd_plan,
    )
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    state_dir(p)

    p = command(
        "render",
        "Write every machine's configuration files to DIR/<machine>/<path on the machine>.",
        cmd_render,
    )
    p.add_argument("--out", required=True, type=Path, metavar="DIR")
    state_dir(p)

    p = sub.add_parser("schema", help="Print the manifest's JSON Schema (for editors).")
    p.set_defaults(func=cmd_schema)

    p = command(
        "apply",
        "Reconcile until the cluster matches the manifest (exit 0) or the timeout passes "
        "(exit 1, saying what is not converged). Prints one line per action.",
        cmd_apply,
    )
    p.add_argument("--timeout", type=float, default=300, metavar="S", help="default 300")
    state_dir(p)

    p = command(
        "run",
        "Keep the cluster converged forever: resync every few seconds and react to manifest "
        "edits within about a second. Ctrl-C stops the operator, not the cluster.",
        cmd_run,
    )
    p.add_argument(
        "--listen",
        metavar="ADDR:PORT",
        help="also serve the status over HTTP (read-only, no auth): GET /status, /healthz, "
        "/readyz; e.g. 127.0.0.1:8800. Off by default",
    )
    state_dir(p)

    p = command(
        "status",
        "Show machines, etcd members, Patroni members, HAProxy backends, phase and the last "
        "decision.",
        cmd_status,
    )
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    state_dir(p)

    p = command(
        "dsn",
        "Print a libpq connection string through HAProxy, password included: "
        'psql "$(pgha-operator dsn)".',
        cmd_dsn,
    )
    p.add_argument("--role", choices=("primary", "replicas"), default="primary")
    p.add_argument("--user", choices=(SUPERUSER, ADMIN_USER), default=SUPERUSER)
    state_dir(p)

    p = command(
        "switchover",
        "Hand the primary role to a healthy replica through Patroni's REST API and wait until "
        "HAProxy's primary port routes to it.",
        cmd_switchover,
    )
    p.add_argument("--to", metavar="NODE", help="the new primary (default: the best replica)")
    p.add_argument("--timeout", type=float, default=60, metavar="S", help="default 60")
    state_dir(p)

    p = command(
        "destroy",
        "Stop every service of the cluster and delete its machines, data and secrets.",
        cmd_destroy,
    )
    p.add_argument("--yes", action="store_true", help="required: this deletes all data")
    state_dir(p)
    add_drill_command(sub)
    add_ssh_command(sub)
    return parser


def _files(args: argparse.Namespace) -> list[str]:
    files = args.files or [DEFAULT_MANIFEST]
    for f in files:
        if not Path(f).exists():
            raise OperatorError(f"{f}: no such manifest file or directory")
    return files


def _print_warnings(warnings: Sequence[str]) -> None:
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)


# --- commands ------------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    for item in load(_files(args)):
        _print_warnings(item.warnings)
        print(f"{item.source}: {summary(item.cluster)}")
    return 0


def summary(cluster: Cluster) -> str:
    s = cluster.spec
    return (
        f"cluster {cluster.name} is valid: provider {s.provider.type}, "
        f"{s.etcd.members} etcd ({s.etcd.placement}), {s.postgres.instances} PostgreSQL "
        f"{s.postgres.version} (Patroni from {s.patroni.source}), "
        f"{s.load_balancer.instances} HAProxy, profile {s.profile}"
    )


def _controller(args: argparse.Namespace, **kwargs: object) -> Controller:
    return Controller(
        _files(args),
        state_dir=getattr(args, "state_dir", None),
        cluster_name=args.cluster,
        **kwargs,  # type: ignore[arg-type]
    )


def cmd_plan(args: argparse.Namespace) -> int:
    loaded = load_one(_files(args), args.cluster)
    _print_warnings(loaded.warnings)
    ctl = _controller(args)  # machine providers observe live once they have machines
    if ctl.provider.kind == "local" or ctl.provider.machines():
        desired, observed = ctl.observe()
    else:
        desired, _ = build_desired(
            loaded.cluster, None, PLACEHOLDER_SECRETS, ctl.binaries, "postgres", "systemd"
        )
        observed = Observed()
    result = plan(desired, observed)
    if args.json:
        print(
            json.dumps(
                {
                    "cluster": loaded.cluster.name,
                    "decision": result.decision,
                    "blocked": result.blocked,
                    "actions": [
                        {"type": type(a).__name__, "describe": a.describe} for a in result.actions
                    ],
                },
                indent=2,
            )
        )
    elif result.blocked:
        print(result.decision)
    elif not result.actions:
        print("no changes")
    else:
        for a in result.actions:
            print(a.describe)
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    loaded = load_one(_files(args), args.cluster)
    cluster = loaded.cluster
    ctl = _controller(args)  # machine providers render real secrets once they have machines
    if ctl.provider.kind == "local" or ctl.provider.machines():
        secrets_file = ctl.state_dir / "secrets.yaml"
        secrets = PLACEHOLDER_SECRETS
        if secrets_file.exists():
            from pgha_operator.shell.secrets_file import load_or_create

            secrets = load_or_create(ctl.state_dir)
        layouts = {m.name: ctl.provider.layout(m.name) for m in topology.build(cluster).machines}
        desired, ctx = build_desired(
            cluster, layouts, secrets, ctl.binaries, ctl.user, ctl.provider.service_manager
        )
    else:
        desired, ctx = build_desired(
            cluster, None, PLACEHOLDER_SECRETS, ctl.binaries, "postgres", "systemd"
        )
    for f in desired.files:
        target = args.out / f.machine / ctx.layouts[f.machine].relative(f.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f.content)
        target.chmod(f.mode)
        print(target)
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    print(json.dumps(Cluster.model_json_schema(by_alias=True), indent=2))
    return 0


def _progress(action: Action) -> None:
    print(f"-> {action.describe}", flush=True)


def cmd_apply(args: argparse.Namespace) -> int:
    ctl = _controller(args, progress=_progress)
    _print_warnings(ctl.loaded.warnings)
    ctl.prepare()
    try:
        report = ctl.apply(args.timeout)
    finally:
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
    topo = topology.build(ctl.cluster)
    ports = ctl.cluster.spec.load_balancer.ports
    address = topo.address(topo.loadbalancers[0])
    return (
        f'connect: psql "$(pgha-operator dsn -f {" -f ".join(ctl.paths)})"   '
        f"writes {address}:{ports.primary}, reads {address}:{ports.replicas}, "
        f"stats http://{address}:{ports.stats}/"
    )


def cmd_run(args: argparse.Namespace) -> int:
    # A taken port fails here, before the operator takes its lock or touches anything.
    server = (
        StatusServer(parse_listen(args.listen), lambda: ctl.last_cycle) if args.listen else None
    )
    try:
        ctl = _controller(args, progress=_progress)
        _print_warnings(ctl.loaded.warnings)
        ctl.prepare()
        stop = threading.Event()

        def on_signal(signum: int, frame: object) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        print(f"operator for cluster {ctl.cluster.name} running (state {ctl.state_dir})")
        print(connect_hint(ctl), flush=True)
        if server:
            server.start()
            print(f"status: {server.url}/status (also /healthz, /readyz)", flush=True)
        try:
            ctl.run(stop)
        finally:
            ctl.unlock()
    finally:
        if server:
            server.stop()
    print("operator stopped; the cluster keeps running", flush=True)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    ctl = _controller(args, fall_back_to_last_applied=True)
    report = ctl.cycle(act=False)
    status = report.status
    saved = read_status(ctl.state_dir)
    if saved and ctl._lock_file is None and _operator_running(ctl):
        # The running operator's own decision is the one to show.
        for key in ("lastDecision", "manifestError", "events", "observedGeneration"):
            if key in saved:
                status[key] = saved[key]
    if args.json:
        print(json.dumps(status, indent=2, default=str))
    else:
        print(format_status(status))
    return 0 if status["phase"] == "Converged" else 3


def _operator_running(ctl: Controller) -> bool:
    try:
        ctl.lock()
    except OperatorError:
        return True
    ctl.unlock()
    return False


def cmd_dsn(args: argparse.Namespace) -> int:
    ctl = _controller(args)
    secrets_file = ctl.state_dir / "secrets.yaml"
    if not secrets_file.exists():
        raise OperatorError(f"cluster {ctl.cluster.name} has no secrets yet: run apply first")
    from pgha_operator.shell.secrets_file import load_or_create

    secrets = load_or_create(ctl.state_dir)
    topo = topology.build(ctl.cluster)
    ports = ctl.cluster.spec.load_balancer.ports
    port = ports.primary if args.role == "primary" else ports.replicas
    password = secrets.superuser_password if args.user == SUPERUSER else secrets.admin_password
    address = topo.address(topo.loadbalancers[0])
    print(
        f"host={address} port={port} user={args.user} password={password} "
        "dbname=postgres connect_timeout=5"
    )
    return 0


def cmd_switchover(args: argparse.Namespace) -> int:
    ctl = _controller(args)
    desired, observed = ctl.observe()
    leader = observed.patroni.leader
    if leader is None or leader.name not in observed.patroni.primaries:
        raise OperatorError(
            f"cluster {ctl.cluster.name} has no running primary to switch over from"
        )
    candidate = args.to or switchover_candidate(desired, observed, leader.name)
    healthy = {m.name for m in observed.patroni.members if m.state == "streaming"}
    if candidate is None or candidate == leader.name or candidate not in healthy:
        raise OperatorError(
            f"no healthy candidate: {candidate or 'none'} is not a streaming replica "
            f"(streaming: {', '.join(sorted(healthy)) or 'none'})"
        )
    started = time.monotonic()
    outcome = execute(
        [Switchover(leader.name, candidate, "as requested")], ctl.env(desired), _progress
    )
    if outcome.error:
        raise OperatorError(outcome.error)
    deadline = started + args.timeout
    while time.monotonic() < deadline:
        _, now = ctl.observe(desired)
        if all(f.up(PRIMARY_BACKEND) == {candidate} for f in now.haproxy.values() if f.reachable):
            print(
                f"{candidate} is primary behind :{ctl.cluster.spec.load_balancer.ports.primary} "
                f"after {time.monotonic() - started:.1f}s"
            )
            return 0
        time.sleep(0.2)
    raise OperatorError(f"{candidate} is primary but HAProxy does not route to it yet")


def cmd_destroy(args: argparse.Namespace) -> int:
    if not args.yes:
        print(
            "destroy deletes every machine, database and secret of the cluster; "
            "add --yes to confirm",
            file=sys.stderr,
        )
        return EXIT_INVALID
    # The running cluster's definition decides what to destroy, even under a refused edit.
    ctl = _controller(args, fall_back_to_last_applied=True)
    ctl.lock()
    try:
        removed = ctl.destroy()
    finally:
        ctl.unlock()
    for name in removed:
        print(f"destroyed machine {name}")
    print(f"cluster {ctl.cluster.name} destroyed; state dir {ctl.state_dir} removed")
    return 0
