"""`pgha-operator drill`: inject one fault scenario (N times) and print the figures."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import Any

from pgha_operator.cli.args import add_manifest_arguments, add_state_dir_argument, manifest_files
from pgha_operator.drill import restore_cli
from pgha_operator.drill.checker import RunFigures
from pgha_operator.drill.faults import FAULTS
from pgha_operator.drill.report import DrillResult
from pgha_operator.drill.scenarios import DrillOptions, run_drill
from pgha_operator.drill.target import DrillRefused
from pgha_operator.drill.writer import ClientTimeouts

EXIT_REFUSED = 2
EXIT_FAILED = 1

HELP = (
    "Prove the HA: write through the load balancer, inject a fault, and report the write "
    "gap, acknowledged rows lost and any time two nodes accepted writes. Kills real "
    "processes: runs only with --yes, on a cluster whose manifest sets `spec.drills: allowed`."
)


def add_drill_command(sub: Any) -> argparse.ArgumentParser:
    scenarios = "\n".join(f"  {name:18} {f.summary}" for name, f in FAULTS.items())
    scenarios += f"\n  {restore_cli.SCENARIO:18} {restore_cli.SUMMARY}"
    p: argparse.ArgumentParser = sub.add_parser(
        "drill",
        help=HELP,
        description=f"{HELP}\n\nscenarios:\n{scenarios}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=cmd_drill)
    add_manifest_arguments(p)
    add_state_dir_argument(p)
    p.add_argument(
        "--scenario", required=True, choices=[*FAULTS, restore_cli.SCENARIO], metavar="NAME"
    )
    p.add_argument(
        "--clone-network",
        metavar="CIDR",
        help="restore scenario: the clone's addresses (default: the next /24)",
    )
    p.add_argument("--repeat", type=_positive_int, default=1, metavar="N", help="default 1")
    p.add_argument(
        "--seconds",
        type=float,
        metavar="S",
        help="how long the fault lasts (default: until Patroni failed over for the primary "
        "scenarios, 10 s for a replica or etcd member, until read-only for quorum loss)",
    )
    p.add_argument("--clients", type=_positive_int, default=4, metavar="N", help="default 4")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--yes", action="store_true", help="required: the drill kills processes")
    return p


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def _interrupt(signum: int, frame: object) -> None:
    # Turn SIGTERM into KeyboardInterrupt: the faults' `finally` blocks undo what they did.
    raise KeyboardInterrupt


def cmd_drill(args: argparse.Namespace) -> int:
    if args.scenario == restore_cli.SCENARIO:
        return restore_cli.cmd_restore_drill(args)
    options = DrillOptions(
        scenario=args.scenario,
        repeat=args.repeat,
        seconds=args.seconds,
        clients=args.clients,
        timeouts=ClientTimeouts(),
    )
    signal.signal(signal.SIGTERM, _interrupt)

    def progress(number: int, run: RunFigures) -> None:
        print(f"run {number}: {summary_line(run)}", file=sys.stderr, flush=True)

    try:
        result = run_drill(
            manifest_files(args), args.state_dir, args.cluster, options, args.yes, on_run=progress
        )
    except DrillRefused as exc:
        print(f"drill refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(format_table(result))
    return 0 if result.verdict == "PASS" else EXIT_FAILED


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def summary_line(run: RunFigures) -> str:
    return (
        f"{run.scenario} on {', '.join(run.targets)}: write gap {_s(run.write_gap_seconds)} s, "
        f"{run.acked_rows} acked, {run.acked_lost} lost, dual primary "
        f"{_s(run.dual_primary_seconds)} s -> {run.verdict}"
    )


def timeline_line(t: dict) -> str:
    """death seen (how) -> decided -> fenced -> key released -> promoted -> HAProxy -> first write."""
    steps = [f"{name} {_s(t.get(key))}" for key, name in TIMELINE_WORDS]
    return f"seen by {t.get('seenBy') or '-'}: " + " -> ".join(steps) + " s"


TIMELINE_WORDS = (
    ("deathSeen", "death seen"),
    ("decided", "decided"),
    ("fenced", "fenced"),
    ("keyReleased", "key released"),
    ("promoted", "promoted"),
    ("haproxyUp", "HAProxy up"),
    ("firstWrite", "first write"),
)

COLUMNS = (
    ("run", 3),
    ("target", 12),
    ("gap s", 7),
    ("acked", 7),
    ("lost", 5),
    ("failed", 7),
    ("unknown", 7),
    ("dual s", 7),
    ("old stop s", 10),
    ("rejoin s", 8),
    ("converged s", 11),
    ("verdict", 7),
)


def format_table(result: DrillResult) -> str:
    lines = [
        f"drill {result.scenario} on cluster {result.cluster} (profile {result.profile}, "
        f"ttl {result.ttl} s, synchronous {result.synchronous}); {result.clients} writers "
        f"through the load balancer, client timeouts connect {result.timeouts.connect} s / "
        f"statement {result.timeouts.statement} s; repairs by "
        + ("the running operator" if result.operator == "running" else "the drill's operator"),
        "  ".join(name.rjust(width) for name, width in COLUMNS),
    ]
    for number, run in enumerate(result.runs, 1):
        cells = (
            str(number),
            ",".join(run.targets),
            _s(run.write_gap_seconds),
            str(run.acked_rows),
            str(run.acked_lost),
            str(run.failed_attempts),
            str(run.unknown_attempts),
            _s(run.dual_primary_seconds),
            _s(run.old_primary_stopped_writes_seconds),
            _s(run.rejoined_seconds),
            _s(run.converged_seconds),
            run.verdict,
        )
        lines.append("  ".join(c.rjust(w) for c, (_, w) in zip(cells, COLUMNS, strict=True)))
        if run.timeline and run.timeline.get("deathSeen") is not None:
            lines.append(f"      timeline: {timeline_line(run.timeline)}")
        for problem in run.problems:
            lines.append(f"      {problem}")
        if run.read_only_held_seconds is not None:
            lines.append(
                f"      read-only {_s(run.read_only_after_seconds)} s after the fault, "
                f"for {_s(run.read_only_held_seconds)} s until etcd came back"
            )
    lost = sum(r.acked_lost for r in result.runs)
    dual = sum(r.dual_primary_seconds for r in result.runs)
    lines.append(
        f"verdict: {result.verdict} ({lost} acknowledged rows lost, "
        f"{dual:.3f} s with two primaries, {len(result.runs)} run(s))"
    )
    return "\n".join(lines)
