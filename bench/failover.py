"""Failover figures per timing profile, as JSON on stdout.

For the `seed` profile and the default (`fast`) one, a fresh 3 etcd + 3 PostgreSQL +
1 HAProxy cluster on the local provider goes through N runs (default 5) of each case:

- `switchover`: Patroni's planned switchover;
- `crash-primary, fencing off`: the primary's machine dies, the leader lease decides;
- `crash-primary, fencing auto`: the same, the operator fences the dead machine and
  releases its leader key (the default for providers that can power machines off).

Each run is one `pgha-operator drill --json` (the drill runs its own operator, fresh per
run). Prints every run's figures, the medians, the step timeline's medians (death seen ->
fenced -> key released -> promoted -> HAProxy up -> first write, drill/timeline.py) and
seed/fast ratios of the median write gap.

    .venv/bin/python bench/failover.py [--runs 5] [--profiles seed,fast] [--patroni-source debian]

`--compare-checks` instead compares HAProxy check timings on the fast profile with the
fenced crash (how the default profile's checks were chosen):

    .venv/bin/python bench/failover.py --compare-checks --runs 8

`--switchover` instead compares the two switchover paths on the fast profile, runs
interleaved: `assisted` (the operator releases Patroni's leader key once the old primary
shut down and the candidate received all its WAL; the default) and `patroni` (Patroni's
own demote, which waits ~2 s more before it releases the key):

    .venv/bin/python bench/failover.py --switchover --runs 5

`--partition` instead runs `partition-primary` on an nspawn cluster (root only; 3
PostgreSQL machines with etcd beside them, 1 HAProxy machine, `synchronous: on`): the
operator fences the cut-off primary once both replicas confirm they lost it too
(bench/partition.py):

    .venv/bin/python bench/failover.py --partition --runs 5
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.partition import run_partition  # noqa: E402
from pgha_operator.core.spec import PROFILES  # noqa: E402
from pgha_operator.drill.timeline import medians as timeline_medians  # noqa: E402
from tests.integration.cluster_helpers import (  # noqa: E402
    cli,
    kill_leftovers,
    make_state_root,
    write_manifest,
)

NETWORK = "127.0.52.0/24"
BODY = """  drills: allowed
  failover: {{fencing: "{fencing}"}}
  etcd: {{members: 3}}
  postgres: {{instances: 3}}
  patroni: {{source: {source}}}
  loadBalancer: {{instances: 1{checks}}}
"""
# (case name, drill scenario, operator fencing)
CASES = (
    ("switchover", "switchover", "auto"),
    ("crash-primary, fencing off", "crash-primary", "off"),
    ("crash-primary, fencing auto", "crash-primary", "auto"),
)
# Candidates of --compare-checks: (inter, fastinter, downinter), rise 1 fall 2.
CHECKS = (("1s", "250ms", "500ms"), ("1s", "100ms", "200ms"), ("500ms", "100ms", "100ms"))
FIGURES = ("writeGapSeconds", "newPrimaryAcceptedSeconds", "rejoinedSeconds", "convergedSeconds")


class Cluster:
    def __init__(self, profile: str, patroni_source: str = "pypi") -> None:
        self.profile = profile
        self.patroni_source = patroni_source
        self.root = make_state_root()
        self.state = self.root / "state"
        self.manifest = self.write("auto")

    def write(self, fencing: str, checks: tuple[str, str, str] | None = None) -> Path:
        check = ""
        if checks:
            inter, fast, down = checks
            check = (
                f", healthCheck: {{inter: {inter}, fastinter: {fast}, downinter: {down}, "
                "rise: 1, fall: 2}"
            )
        body = BODY.format(fencing=fencing, checks=check, source=self.patroni_source)
        path = write_manifest(self.root, f"failover-{self.profile}", NETWORK, body)
        path.write_text(path.read_text().replace("profile: fast", f"profile: {self.profile}"))
        self.manifest = path
        return path

    def apply(self) -> None:
        res = cli(
            "apply", "-f", str(self.manifest), "--state-dir", str(self.state), "--timeout", "300"
        )
        if res.returncode != 0:
            raise RuntimeError(f"apply failed:\n{res.stdout}\n{res.stderr}")

    def drill(self, scenario: str) -> dict[str, Any]:
        res = cli(
            *("drill", "-f", str(self.manifest), "--state-dir", str(self.state)),
            *("--scenario", scenario, "--json", "--yes"),
            timeout=600,
        )
        if res.returncode not in (0, 1):
            raise RuntimeError(f"drill {scenario} failed:\n{res.stdout}\n{res.stderr[-3000:]}")
        report = json.loads(res.stdout)
        run = report["runs"][0]
        run["clientTimeouts"] = report["clientTimeouts"]
        return run

    def destroy(self) -> None:
        cli("destroy", "-f", str(self.manifest), "--state-dir", str(self.state), "--yes")
        kill_leftovers(self.state)
        shutil.rmtree(self.root, ignore_errors=True)


def median(values: list[Any]) -> float | None:
    numbers = [v for v in values if v is not None]
    return round(statistics.median(numbers), 3) if numbers else None


def summarize(runs: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        **extra,
        "verdicts": [r["verdict"] for r in runs],
        "ackedLost": sum(r["ackedLost"] for r in runs),
        "dualPrimarySeconds": sum(r["dualPrimarySeconds"] for r in runs),
        **{f: [r[f] for r in runs] for f in FIGURES},
        **{f"median{f[0].upper()}{f[1:]}": median([r[f] for r in runs]) for f in FIGURES},
        "clientTimeouts": runs[0]["clientTimeouts"] if runs else None,
        "timelineMedians": timeline_medians([r["timeline"] for r in runs if r.get("timeline")]),
    }


def run_profile(profile: str, runs: int, patroni_source: str = "pypi") -> dict[str, Any]:
    cluster = Cluster(profile, patroni_source)
    cases: dict[str, Any] = {}
    try:
        cluster.apply()
        for name, scenario, fencing in CASES:
            cluster.write(fencing)
            started = time.monotonic()
            results = [cluster.drill(scenario) for _ in range(runs)]
            cases[name] = summarize(
                results,
                scenario=scenario,
                fencing=fencing,
                wallSeconds=round(time.monotonic() - started, 1),
            )
            print(f"{profile} / {name}: {cases[name]['writeGapSeconds']}", file=sys.stderr)
    finally:
        cluster.destroy()
    return {"timing": PROFILES[profile], "cases": cases}


def compare_checks(runs: int) -> dict[str, Any]:
    cluster = Cluster("fast")
    results: dict[str, list[dict[str, Any]]] = {"/".join(c): [] for c in CHECKS}
    try:
        cluster.apply()
        for _ in range(runs):  # interleaved: a drift of the machine hits every candidate
            for checks in CHECKS:
                cluster.write("auto", checks)
                cluster.apply()  # HAProxy reloads with the candidate's checks
                results["/".join(checks)].append(cluster.drill("crash-primary"))
    finally:
        cluster.destroy()
    return {
        "benchmark": "failover-health-checks",
        "scenario": "crash-primary, fencing auto, profile fast",
        "runsPerCandidate": runs,
        "candidates": {
            name: summarize(r, inter_fastinter_downinter=name, rise=1, fall=2)
            for name, r in results.items()
        },
    }


SWITCHOVER_PATHS = ("patroni", "assisted")  # spec.failover.switchover


def compare_switchover(runs: int) -> dict[str, Any]:
    """The `switchover` drill through each path, interleaved on one cluster (the drill runs
    its own operator: its lease guards the assisted release)."""
    cluster = Cluster("fast")
    results: dict[str, list[dict[str, Any]]] = {p: [] for p in SWITCHOVER_PATHS}
    try:
        cluster.apply()
        for _ in range(runs):
            for path in SWITCHOVER_PATHS:
                manifest = cluster.write("auto")
                text = manifest.read_text().replace(
                    "failover: {", f"failover: {{switchover: {path}, ", 1
                )
                manifest.write_text(text)
                results[path].append(cluster.drill("switchover"))
                print(f"switchover {path}: {results[path][-1]['writeGapSeconds']}", file=sys.stderr)
    finally:
        cluster.destroy()
    return {
        "benchmark": "switchover",
        "scenario": "switchover, profile fast",
        "runsPerPath": runs,
        "paths": {p: summarize(r, switchover=p) for p, r in results.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profiles", default="seed,fast")
    parser.add_argument("--compare-checks", action="store_true")
    parser.add_argument("--switchover", action="store_true", help="assisted vs Patroni's path")
    parser.add_argument("--partition", action="store_true", help="partition-primary on nspawn")
    parser.add_argument(
        "--patroni-source",
        choices=("pypi", "debian"),
        default="pypi",
        help="spec.patroni.source of the cluster (debian: Debian's Patroni 3.0.2)",
    )
    args = parser.parse_args()
    if args.compare_checks:
        print(json.dumps(compare_checks(args.runs), indent=2))
        return
    if args.switchover:
        print(json.dumps(compare_switchover(args.runs), indent=2))
        return
    if args.partition:
        runs = run_partition(args.runs)
        summary = summarize(runs, scenario="partition-primary", provider="nspawn")
        print(json.dumps({"benchmark": "failover-partition", **summary}, indent=2))
        return
    profiles = args.profiles.split(",")
    results = {p: run_profile(p, args.runs, args.patroni_source) for p in profiles}
    ratios = {}
    if "seed" in results and "fast" in results:
        for name, _, _ in CASES:
            seed = results["seed"]["cases"][name]["medianWriteGapSeconds"]
            fast = results["fast"]["cases"][name]["medianWriteGapSeconds"]
            ratios[name] = round(seed / fast, 2) if seed and fast else None
    verdicts = [v for r in results.values() for c in r["cases"].values() for v in c["verdicts"]]
    print(
        json.dumps(
            {
                "benchmark": "failover",
                "runsPerCase": args.runs,
                "patroniSource": args.patroni_source,
                "profiles": results,
                "medianWriteGapRatioSeedOverFast": ratios,
                "verdict": "PASS" if verdicts and all(v == "PASS" for v in verdicts) else "FAIL",
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
