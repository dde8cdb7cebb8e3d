"""Commands that change nothing: validate, schema, plan, render."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pgha_operator.cli.args import (
    add_state_dir_argument,
    controller,
    manifest_files,
    print_warnings,
)
from pgha_operator.core.facts.observed import Observed
from pgha_operator.core.plan import Desired, plan
from pgha_operator.core.spec import Cluster, load
from pgha_operator.shell.controller import Controller
from pgha_operator.shell.restore_source import refuse_missing_source


def add_commands(command: Any, sub: Any) -> None:
    command(
        "validate",
        "Check manifests without touching anything; exit 2 naming file, field and reason.",
        cmd_validate,
    )
    p = command(
        "plan",
        "Show the actions the next cycle would take, in order (against the live cluster for "
        "the local provider; against an empty one otherwise). Writes nothing.",
        cmd_plan,
    )
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    add_state_dir_argument(p)
    p = command(
        "render",
        "Write every machine's configuration files to DIR/<machine>/<path on the machine>.",
        cmd_render,
    )
    p.add_argument("--out", required=True, type=Path, metavar="DIR")
    add_state_dir_argument(p)
    p = sub.add_parser("schema", help="Print the manifest's JSON Schema (for editors).")
    p.set_defaults(func=cmd_schema)


def cmd_validate(args: argparse.Namespace) -> int:
    for item in load(manifest_files(args)):
        refuse_missing_source(item, only_new=True)
        print_warnings(item.warnings)
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


def cmd_schema(args: argparse.Namespace) -> int:
    print(json.dumps(Cluster.model_json_schema(by_alias=True), indent=2))
    return 0


def preview(ctl: Controller) -> tuple[Desired, Observed]:
    """The desired state and what is there, for commands that write nothing. The local
    provider, or one that has made machines, is observed live; a machine provider with no
    machines yet is compared with an empty world. Passwords are placeholders until the
    first apply generates them."""
    desired = ctl.desired()
    if ctl.provider.kind == "local" or ctl.provider.machines():
        return ctl.observe(desired)
    return desired, Observed()


def cmd_plan(args: argparse.Namespace) -> int:
    ctl = controller(args)
    print_warnings(ctl.loaded.warnings)
    desired, observed = preview(ctl)
    result = plan(desired, observed)
    if args.json:
        body = {
            "cluster": ctl.cluster.name,
            "decision": result.decision,
            "blocked": result.blocked,
            "actions": [{"type": type(a).__name__, "describe": a.describe} for a in result.actions],
        }
        print(json.dumps(body, indent=2))
    elif result.blocked:
        print(result.decision)
    elif not result.actions:
        print("no changes")
    else:
        for a in result.actions:
            print(a.describe)
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    ctl = controller(args)
    desired = ctl.desired()
    for f in desired.files:
        target = args.out / f.machine / ctl.layouts[f.machine].relative(f.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f.content)
        target.chmod(f.mode)
        print(target)
    return 0
