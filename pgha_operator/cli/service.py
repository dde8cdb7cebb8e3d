"""`install-service` and `uninstall-service`: the operator as a systemd service."""

from __future__ import annotations

import argparse
from typing import Any

from pgha_operator.core.errors import PermanentError
from pgha_operator.core.service_unit import (
    DEFAULT_MANIFESTS,
    DEFAULT_STATE_ROOT,
    UNIT_NAME,
    UnitSettings,
    check_absolute,
    render_unit,
)
from pgha_operator.shell import service_unit
from pgha_operator.shell.status_http import parse_listen


def add_service_commands(sub: Any) -> None:
    help_text = (
        "Install the operator as a systemd service (Type=notify, Restart=always, a watchdog) "
        "that runs `run -f MANIFESTS`: every cluster whose manifest is in that directory. "
        "Enables and starts it."
    )
    p = sub.add_parser("install-service", help=help_text, description=help_text)
    p.set_defaults(func=cmd_install_service)
    p.add_argument(
        "--manifests", default=DEFAULT_MANIFESTS, metavar="DIR", help=f"default {DEFAULT_MANIFESTS}"
    )
    p.add_argument(
        "--state-root",
        default=DEFAULT_STATE_ROOT,
        metavar="DIR",
        help=f"each cluster's state is DIR/<cluster> (default {DEFAULT_STATE_ROOT})",
    )
    p.add_argument("--listen", metavar="ADDR:PORT", help="passed to run --listen")
    p.add_argument(
        "--watchdog", type=int, default=60, metavar="S", help="WatchdogSec= (default 60)"
    )
    p.add_argument("--unit", default=UNIT_NAME, help=f"unit name (default {UNIT_NAME})")
    p.add_argument("--no-start", action="store_true", help="enable only; start at next boot")
    p.add_argument("--print", action="store_true", help="print the unit; install nothing")
    help_text = (
        "Stop, disable and remove the operator's systemd unit. The clusters keep running "
        "(their daemons, machines and state are not touched)."
    )
    p = sub.add_parser("uninstall-service", help=help_text, description=help_text)
    p.set_defaults(func=cmd_uninstall_service)
    p.add_argument("--unit", default=UNIT_NAME, help=f"unit name (default {UNIT_NAME})")


def settings_from(args: argparse.Namespace) -> UnitSettings:
    problems = check_absolute([("--manifests", args.manifests), ("--state-root", args.state_root)])
    if problems:
        raise PermanentError("; ".join(problems))
    if args.listen:
        parse_listen(args.listen)
    if args.watchdog < 5:
        raise PermanentError(f"--watchdog {args.watchdog}: at least 5 seconds")
    return UnitSettings(
        binary=service_unit.venv_binary(),
        manifests=args.manifests,
        state_root=args.state_root,
        listen=args.listen,
        watchdog_sec=args.watchdog,
    )


def cmd_install_service(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if args.print:
        print(render_unit(settings), end="")
        return 0
    path = service_unit.install(settings, args.unit, start=not args.no_start)
    print(f"installed {path}; {'enabled' if args.no_start else 'enabled and started'}")
    print(f"manifests: {settings.manifests} (one cluster per file; add or remove files at will)")
    print(f"logs: journalctl -u {args.unit}   state: {settings.state_root}/<cluster>")
    return 0


def cmd_uninstall_service(args: argparse.Namespace) -> int:
    path = service_unit.uninstall(args.unit)
    if path is None:
        print(f"{args.unit} is not installed; nothing to do")
        return 0
    print(f"removed {path}; the operator is stopped, the clusters keep running")
    return 0
