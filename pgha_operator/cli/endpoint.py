"""The operator's own endpoint credentials: `--operator-dir` and `pgha-operator token`."""

from __future__ import annotations

import argparse
from pathlib import Path

from pgha_operator.shell.endpoint_access import default_operator_dir, load_or_create_token


def add_operator_dir_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--operator-dir",
        type=Path,
        default=default_operator_dir(),
        help="the operator's own files, shared by every cluster it serves: the endpoint's "
        "token and TLS certificate (default: %(default)s)",
    )


def add_token_command(sub: argparse._SubParsersAction) -> None:
    help_text = (
        "Print the bearer token of `run --listen` on a non-loopback address (made on first "
        "use, kept 0600 in the operator dir). Send it as `Authorization: Bearer TOKEN`; in a "
        "browser, give it as the password (any user name)."
    )
    p = sub.add_parser("token", help=help_text, description=help_text)
    add_operator_dir_argument(p)
    p.set_defaults(func=cmd_token)


def cmd_token(args: argparse.Namespace) -> int:
    print(load_or_create_token(args.operator_dir))
    return 0
