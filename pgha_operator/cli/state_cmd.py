"""`state export` / `state import`: hand a standby operator on another host the cluster's
secrets, CA and last-applied manifest (shell/state/transfer.py)."""

from __future__ import annotations

import argparse
import tarfile
from pathlib import Path
from typing import Any

from pgha_operator.cli.args import add_manifest_arguments, add_state_dir_argument, manifest_files
from pgha_operator.core.errors import PermanentError
from pgha_operator.shell.manifest import load_one
from pgha_operator.shell.providers.local import default_state_dir
from pgha_operator.shell.state import transfer


def add_state_command(sub: Any) -> None:
    p = sub.add_parser(
        "state",
        help="export or import the state a standby operator on another host needs",
        description="Export the cluster's secrets, CA and certificates (tls/), last-applied "
        "manifest and ssh host records into one archive (mode 0600: it holds every password "
        "and the CA key), or import one into a standby's state dir. An imported state dir "
        "acts only under the leader lease: its operator never bootstraps the cluster.",
    )
    verbs = p.add_subparsers(title="verbs", metavar="VERB", required=True)
    e = verbs.add_parser("export", help="write the archive")
    add_manifest_arguments(e)
    add_state_dir_argument(e)
    e.add_argument("--out", type=Path, required=True, metavar="FILE", help="the archive")
    e.set_defaults(func=cmd_export)
    i = verbs.add_parser("import", help="unpack an archive into this host's state dir")
    i.add_argument("archive", type=Path, metavar="FILE")
    add_state_dir_argument(i)
    i.set_defaults(func=cmd_import)


def cmd_export(args: argparse.Namespace) -> int:
    state = args.state_dir
    if state is None:
        state = default_state_dir(load_one(manifest_files(args), args.cluster).cluster.name)
    cluster, members = transfer.export_state(state, args.out)
    print(
        f"exported cluster {cluster} from {state} to {args.out} (mode 0600): {', '.join(members)}"
    )
    print("keep it secret: it holds every password and the CA's private key")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    try:
        cluster = transfer.archive_cluster(args.archive)
        state = args.state_dir or default_state_dir(cluster)
        transfer.import_state(args.archive, state)
    except (OSError, tarfile.TarError) as exc:
        raise PermanentError(f"{args.archive}: cannot read the archive: {exc}") from None
    print(f"imported cluster {cluster} into {state}")
    print(
        "start `pgha-operator run` here with the same manifest: it stands by and leads only "
        "through the lease in the cluster's etcd (it never bootstraps the cluster)"
    )
    return 0
