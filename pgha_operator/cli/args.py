"""What every cluster command shares: the -f/--cluster/--state-dir arguments, the manifest
files they name, warnings, progress lines and the controller they build. Commands in other
modules (ssh, drill) use these too, so they read the same as the rest."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pgha_operator.core.actions import Action
from pgha_operator.core.errors import OperatorError
from pgha_operator.shell.controller import Controller

DEFAULT_MANIFEST = "manifests/demo.yaml"


def add_manifest_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-f",
        "--file",
        dest="files",
        action="append",
        metavar="PATH",
        help=f"manifest file or directory (repeatable; default {DEFAULT_MANIFEST})",
    )
    p.add_argument("--cluster", help="the cluster to act on when PATH holds several")


def add_state_dir_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--state-dir",
        type=Path,
        help="where the cluster's machines, secrets and status live (default: "
        "/var/lib/pgha-operator/CLUSTER as root, else $XDG_STATE_HOME/pgha-operator/CLUSTER)",
    )


def manifest_files(args: argparse.Namespace) -> list[str]:
    """The -f paths (default manifests/demo.yaml); a missing one is an error."""
    files = args.files or [DEFAULT_MANIFEST]
    for f in files:
        if not Path(f).exists():
            raise OperatorError(f"{f}: no such manifest file or directory")
    return files


def controller(args: argparse.Namespace, **kwargs: Any) -> Controller:
    return Controller(
        manifest_files(args),
        state_dir=getattr(args, "state_dir", None),
        cluster_name=args.cluster,
        **kwargs,
    )


def print_warnings(warnings: Sequence[str]) -> None:
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)


def print_progress(action: Action) -> None:
    print(f"-> {action.describe}", flush=True)
