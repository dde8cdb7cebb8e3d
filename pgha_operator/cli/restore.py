"""`pgha-operator restore --to-time T [--yes]`: the running cluster restored in place to a
point in time (docs/backup.md). Without --yes it prints the plan and what is lost."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from pgha_operator.cli.args import add_state_dir_argument, controller
from pgha_operator.core.errors import PermanentError
from pgha_operator.core.plan.restore import RestorePlan, RestoreRefused, restore_plan
from pgha_operator.shell.backups import backup_spec, list_backups
from pgha_operator.shell.controller import Controller
from pgha_operator.shell.restore import restore_in_place


def add_commands(command: Any) -> None:
    p = command(
        "restore",
        "Restore the running cluster in place to a point in time from its pgBackRest "
        "repository (spec.backup): everything after that time is lost. Prints the plan; "
        "acts only with --yes, holding the operator lock throughout.",
        cmd_restore,
    )
    p.add_argument(
        "--to-time",
        required=True,
        type=target_time,
        metavar="TIME",
        help="the time to restore to, with its zone: '2026-11-28 14:00:00+00:00' (or ...Z)",
    )
    p.add_argument("--yes", action="store_true", help="do it (without: print the plan only)")
    add_state_dir_argument(p)


def target_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: write it like '2026-11-28 14:00:00+00:00'"
        ) from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} has no time zone: add one, e.g. '{text}+00:00' for UTC"
        )
    return value


def make_plan(ctl: Controller, target: datetime) -> RestorePlan:
    backup_spec(ctl.cluster)
    info = list_backups(ctl)
    _, observed = ctl.observe()
    leader = observed.patroni.leader
    try:
        return restore_plan(
            ctl.cluster.name,
            ctl.topology.postgres,
            leader.name if leader else None,
            info.backups,
            target,
            datetime.now(UTC),
        )
    except RestoreRefused as exc:
        raise PermanentError(f"cannot restore cluster {ctl.cluster.name}: {exc}") from None


def format_plan(plan: RestorePlan) -> str:
    lines = [
        f"Restore cluster {plan.cluster} to {plan.target.isoformat(sep=' ')} "
        f"(from backup {plan.backup.label}).",
        plan.loss,
        "Steps:",
        *(f"  {i}. {step.describe}" for i, step in enumerate(plan.steps, start=1)),
    ]
    return "\n".join(lines)


def cmd_restore(args: argparse.Namespace) -> int:
    ctl = controller(args)
    if not args.yes:
        print(format_plan(make_plan(ctl, args.to_time)))
        print("Nothing was done: run again with --yes to restore.")
        return 0
    ctl.prepare()  # the operator lock and lease, held until the cluster is back
    try:
        plan = make_plan(ctl, args.to_time)
        print(format_plan(plan), flush=True)
        restore_in_place(ctl, plan, lambda line: print(line, flush=True))
    finally:
        ctl.unlock()
    print(f"cluster {ctl.cluster.name} restored to {plan.target.isoformat(sep=' ')}")
    return 0
