"""The command line: `pgha-operator COMMAND --help` says what each command does.

Commands live by what they do: preview (validate, schema, plan, render: change nothing),
operate (apply, run, destroy: act as the operator), day2 (status, switchover), connect
(dsn, psql),
rotate (passwords), and the drill and ssh doors.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from pgha_operator import __version__
from pgha_operator.cli import backup, connect, day2, logs, operate, preview, restore
from pgha_operator.cli.args import add_manifest_arguments
from pgha_operator.cli.endpoint import add_token_command
from pgha_operator.cli.rotate import add_rotate_command
from pgha_operator.cli.service import add_service_commands
from pgha_operator.cli.ssh import add_ssh_command
from pgha_operator.cli.state_cmd import add_state_command
from pgha_operator.core.errors import OperatorError
from pgha_operator.core.spec import ManifestError
from pgha_operator.drill.cli import add_drill_command
from pgha_operator.shell.hosts.base import HostError

EXIT_INVALID = 2

DESCRIPTION = """\
Keep a highly available PostgreSQL cluster (Patroni + etcd + HAProxy) converged with the
YAML manifests you edit. Start with `pgha-operator apply` (or `run` to keep it converged),
then `status` and `dsn`. Every command takes -f PATH (a manifest file or a directory;
default manifests/demo.yaml)."""


def main(argv: Sequence[str] | None = None) -> int:
    logs.configure("console")  # `run` and `apply` choose with --log-format
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

    def command(
        name: str, help_text: str, func: Callable[[argparse.Namespace], int]
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func)
        add_manifest_arguments(p)
        return p

    preview.add_commands(command, sub)
    operate.add_commands(command)
    day2.add_commands(command)
    connect.add_commands(command)
    backup.add_commands(command)
    restore.add_commands(command)
    add_rotate_command(sub)
    add_drill_command(sub)
    add_ssh_command(sub)
    add_token_command(sub)
    add_state_command(sub)
    add_service_commands(sub)
    return parser
