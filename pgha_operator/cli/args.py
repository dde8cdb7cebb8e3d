"""Arguments every cluster command shares (-f, --cluster, --state-dir), in one place so the
commands that live in other modules (ssh, drill) read the same as the rest."""

from __future__ import annotations

import argparse
from pathlib import Path

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
