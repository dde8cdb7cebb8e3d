"""`pgha-operator rotate passwords [--role NAME]`: new generated passwords, without downtime."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pgha_operator.cli.args import (
    add_manifest_arguments,
    add_state_dir_argument,
    controller,
    manifest_files,
    print_progress,
)
from pgha_operator.core.rotation import LOGINS
from pgha_operator.core.spec.catalog import declared_logins
from pgha_operator.shell.manifest import load_one
from pgha_operator.shell.rotate import plan_rotation, rotate_passwords

ROTATE_HELP = "Rotate secrets: `pgha-operator rotate passwords --help` says how."

PASSWORDS_HELP = """\
Give the cluster's logins new generated passwords without downtime: every login, or the
ones named with --role. Each database role: (1) the new password is saved in the state
dir's secrets.yaml and its copy, the old one kept in rotation.yaml; (2) ALTER ROLE sets it
on the primary (sent as a SCRAM verifier, never in clear); (3) every node's patroni.yml
gets it and Patroni reloads (no restart: streaming replicas stay connected, and their next
connection uses the new password); (4) the cluster converges and the role logs in with
the new password. Patroni's REST user and HAProxy's stats user: saved, then the config
written and reloaded.

A replica that reconnects between (2) and (3), a second or two, is refused once and
retries with the new password after the reload. Until (2) has run, every config and the
operator keep the old password, so an interrupted rotation leaves a working cluster; the
next `apply`, the running `run`, or a re-run of this command finishes it.

Beside a running `pgha-operator run` the command only saves the passwords and waits: that
operator sets and distributes them in its next cycles. With no operator running it holds
the operator lock and acts itself (an `apply` started meanwhile is refused until it ends).
Two rotations never overlap. Clients that connect with the passfiles `dsn` names, or with
`pgha-operator psql`, pick the new password up at once: `apply` and `run` rewrite the
passfiles (state dir, passfiles/ROLE) as soon as the role has it.

roles (and every declared login role of spec.postgres.roles):
"""


def add_rotate_command(sub: Any) -> argparse.ArgumentParser:
    """Register `rotate passwords` on the CLI's subparsers (one line in build_parser)."""
    p = sub.add_parser("rotate", help=ROTATE_HELP, description=ROTATE_HELP)
    p.set_defaults(func=lambda _: _usage(p))
    what = p.add_subparsers(title="what", metavar="WHAT")
    roles = "".join(f"  {x.name:<11} {x.purpose}\n" for x in LOGINS)
    q = what.add_parser(
        "passwords",
        help="new passwords for the cluster's logins, without downtime",
        description=PASSWORDS_HELP + roles,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    q.set_defaults(func=cmd_rotate_passwords)
    add_manifest_arguments(q)
    add_state_dir_argument(q)
    q.add_argument(
        "--role",
        action="append",
        metavar="NAME",
        help="rotate only this login: one listed above or a declared login role of "
        "spec.postgres.roles (repeatable; default: all of them)",
    )
    q.add_argument("--timeout", type=float, default=180, metavar="S", help="default 180")
    q.add_argument(
        "--dry-run", action="store_true", help="print the steps in order and change nothing"
    )
    return p


def cmd_rotate_passwords(args: argparse.Namespace) -> int:
    if args.dry_run:
        cluster = load_one(manifest_files(args), args.cluster).cluster
        declared = declared_logins(cluster.spec.postgres.roles)
        for number, step in enumerate(plan_rotation(args.role, declared), 1):
            print(f"{number}. {step.describe}")
        return 0
    ctl = controller(args, progress=print_progress)
    done = rotate_passwords(ctl, args.role, args.timeout, _progress)
    if done.operator:
        print(f"rotated beside the running operator ({done.operator})", file=sys.stderr)
    print(f"new passwords in force for {', '.join(done.roles)} after {done.seconds:.1f}s")
    return 0


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help(sys.stderr)
    return 2


def _progress(line: str) -> None:
    print(f"-> {line}", flush=True)
