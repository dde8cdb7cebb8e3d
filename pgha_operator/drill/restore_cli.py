"""`drill --scenario restore`'s command line: run it, print each run and the figures."""

from __future__ import annotations

import argparse
import json
import sys

from pgha_operator.cli.args import manifest_files
from pgha_operator.drill.restore_check import RestoreRun, spread
from pgha_operator.drill.restore_drill import RestoreDrillOptions, run_restore_drill
from pgha_operator.drill.target import DrillRefused

SCENARIO = "restore"
SUMMARY = (
    "write, back up, write on, restore a clone to a time in between on its own "
    "addresses; every row acknowledged before it there, none after (RPO, RTO)"
)


def run_line(run: RestoreRun) -> str:
    rto = "-" if run.rto_seconds is None else f"{run.rto_seconds:.1f}"
    return (
        f"run {run.number}: target {run.target}, {run.before} rows before it, {run.after} "
        f"after; missing {len(run.missing)}, extra {len(run.extra)}; RPO "
        f"{run.rpo_seconds:.2f} s, RTO {rto} s, clone timeline {run.clone_timeline} "
        f"-> {run.verdict}"
    )


def report(runs: list[RestoreRun]) -> dict[str, object]:
    rtos = [r.rto_seconds for r in runs if r.rto_seconds is not None]
    return {
        "scenario": SCENARIO,
        "runs": [r.to_json() for r in runs],
        "rpoSeconds": spread([r.rpo_seconds for r in runs]),
        "rtoSeconds": spread(rtos),
        "verdict": "PASS" if runs and all(r.verdict == "PASS" for r in runs) else "FAIL",
    }


def cmd_restore_drill(args: argparse.Namespace) -> int:
    options = RestoreDrillOptions(
        repeat=args.repeat, clients=args.clients, clone_network=args.clone_network
    )
    try:
        runs = run_restore_drill(
            manifest_files(args),
            args.state_dir,
            args.cluster,
            options,
            args.yes,
            on_run=lambda run: print(run_line(run), file=sys.stderr, flush=True),
        )
    except DrillRefused as exc:
        print(f"drill refused: {exc}", file=sys.stderr)
        return 2
    body = report(runs)
    if args.json:
        print(json.dumps(body, indent=2))
    else:
        print(
            f"restore drill: {body['verdict']}; RPO {body['rpoSeconds']} s; "
            f"RTO {body['rtoSeconds']} s"
        )
    return 0 if body["verdict"] == "PASS" else 1
