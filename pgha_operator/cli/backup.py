"""Backups on request: `backup [--type full|diff|incr]` and `backups [--json]`."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from pgha_operator.cli.args import add_state_dir_argument, controller
from pgha_operator.core.facts.backup import BackupSet, StanzaInfo, format_size
from pgha_operator.shell.backups import list_backups, take_backup


def add_commands(command: Any) -> None:
    p = command(
        "backup",
        "Take a backup now with pgBackRest (spec.backup): from a healthy replica when there "
        "is one, else from the primary. Refused while another backup runs.",
        cmd_backup,
    )
    p.add_argument("--type", choices=("full", "diff", "incr"), default="full", dest="kind")
    add_state_dir_argument(p)
    p = command(
        "backups",
        "List the cluster's backups in its repository (pgbackrest info). Writes nothing.",
        cmd_backups,
    )
    p.add_argument("--json", action="store_true", help="print them as JSON")
    add_state_dir_argument(p)


def cmd_backup(args: argparse.Namespace) -> int:
    ctl = controller(args)
    taken = take_backup(ctl, args.kind)
    source = f"replica {taken.standby}" if taken.standby else "the primary"
    last = taken.info.last
    label = f" {last.label}" if last else ""
    print(f"{taken.kind} backup{label} taken from {source} in {taken.seconds:.1f}s")
    return 0


def cmd_backups(args: argparse.Namespace) -> int:
    info = list_backups(controller(args, fall_back_to_last_applied=True))
    if args.json:
        print(json.dumps(info_json(info), indent=2))
    else:
        print(format_backups(info))
    return 0


def info_json(info: StanzaInfo) -> dict[str, Any]:
    return {
        "stanza": info.name,
        "status": info.status,
        "walMin": info.wal_min,
        "walMax": info.wal_max,
        "backups": [b.as_json() for b in info.backups],
    }


def _when(stamp: int) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _row(b: BackupSet) -> str:
    wal = f"{b.wal_start}..{b.wal_stop}" if b.wal_start else "-"
    return (
        f"{b.label:<36} {b.type:<5} {_when(b.start)}  {b.stop - b.start:>5}s  "
        f"{format_size(b.size):>10} {format_size(b.repository_size):>10}  {wal}"
    )


def format_backups(info: StanzaInfo) -> str:
    lines = [f"stanza {info.name}: {info.status}"]
    if info.wal_min:
        lines.append(f"WAL archived: {info.wal_min} .. {info.wal_max}")
    if not info.backups:
        lines.append("no backups yet")
        return "\n".join(lines)
    lines.append(
        f"{'LABEL':<36} {'TYPE':<5} {'START':<23}  {'TOOK':>6}  {'SIZE':>10} {'STORED':>10}  WAL"
    )
    lines += [_row(b) for b in info.backups]
    return "\n".join(lines)
