"""CPU time of one converged reconcile cycle, as JSON: observe + plan against an in-memory
converged world (bench/converged_world.py), and build_desired cold (rendering) and cached,
for the demo manifest scaled to 3, 30 and 89 PostgreSQL nodes (3 etcd, 1 HAProxy).
CPU = time.process_time() (all threads of this process); median, min and max of --runs.
verdict_ms (conditions, phase, decision) and metrics_ms (recording the cycle for /metrics)
are what the controller adds to that cycle.

    .venv/bin/python bench/cycle.py [--runs 15] [--nodes 3 30 89]
    .venv/bin/python bench/cycle.py --idle [--seconds 60]

--idle also brings the real demo up (local provider), measures its `run` over --seconds
and tears it down (bench/idle.py): minutes, real processes, the integration lock.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.converged_world import BenchClients, FakeProvider, machine_layout, serving  # noqa: E402
from pgha_operator.core import topology  # noqa: E402
from pgha_operator.core.desired import (  # noqa: E402
    PLACEHOLDER_SECRETS,
    Desired,
    build_desired,
    clear_desired_cache,
)
from pgha_operator.core.facts.observed import Observed  # noqa: E402
from pgha_operator.core.plan import plan  # noqa: E402
from pgha_operator.core.spec import Cluster  # noqa: E402
from pgha_operator.core.status import build_status  # noqa: E402
from pgha_operator.shell.cycle import CycleReport, verdict  # noqa: E402
from pgha_operator.shell.metrics import OperatorMetrics  # noqa: E402
from pgha_operator.shell.observe import observe  # noqa: E402

DEMO = Path(__file__).resolve().parents[1] / "manifests" / "demo.yaml"


def demo(nodes: int) -> Cluster:
    doc = yaml.safe_load(DEMO.read_text())
    doc["spec"]["postgres"]["instances"] = nodes
    # The fake world has no pgBackRest repository: the cycle is measured without backups
    # (with them, one more file read and one pg_stat_archiver query per cycle).
    doc["spec"].pop("backup", None)
    return Cluster.model_validate(doc)


def cpu_ms(fn: Callable[[], object], runs: int, before: Callable[[], object] = lambda: None):
    """Median, min and max CPU milliseconds of `fn` over `runs` calls (`before` untimed)."""
    times = []
    for _ in range(runs):
        before()
        start = time.process_time()
        fn()
        times.append((time.process_time() - start) * 1000)
    return {
        "median": round(statistics.median(times), 3),
        "min": round(min(times), 3),
        "max": round(max(times), 3),
    }


def one_cycle(build: Callable[[], Desired], look: Callable[[Desired], Observed]) -> None:
    """What the controller does every resync: the desired state, an observation, a plan."""
    desired = build()
    plan(desired, look(desired))


def metrics_cost(desired: Desired, observed: Observed, runs: int) -> dict[str, float]:
    """What the loop adds after a converged cycle: recording it in the metrics."""
    the_plan = plan(desired, observed)
    v = verdict(desired, observed, the_plan)
    status = build_status(desired, observed, v.conditions, v.phase, v.decision, {})
    report = CycleReport(the_plan, observed, v.decision, v.phase, True, None, False, status)
    recorder = OperatorMetrics().cluster("bench")
    return cpu_ms(lambda: recorder.record_cycle(report, 0.002, time.time()), runs)


def one_size(nodes: int, runs: int) -> dict[str, Any]:
    cluster = demo(nodes)
    layouts = {m.name: machine_layout(m.name) for m in topology.build(cluster).machines}

    def build() -> Desired:
        return build_desired(
            cluster, layouts, PLACEHOLDER_SECRETS, FakeProvider.binaries, "postgres", "local"
        )[0]

    cold = cpu_ms(build, runs, before=clear_desired_cache)
    cached = cpu_ms(build, runs)
    desired = build()
    world = FakeProvider(desired)
    clients = BenchClients()

    def look(desired: Desired) -> Observed:
        return observe(desired, world, PLACEHOLDER_SECRETS, clients=clients)

    with serving(desired):
        first = plan(desired, look(desired))
        if not first.empty:
            raise RuntimeError(
                f"the fake world is not converged at {nodes} nodes: {first.decision}"
            )
        observed = look(desired)
        return {
            "nodes": nodes,
            "files": len(desired.files),
            "build_desired_cold_ms": cold,
            "build_desired_cached_ms": cached,
            "observe_ms": cpu_ms(lambda: look(desired), runs),
            "plan_ms": cpu_ms(lambda: plan(desired, observed), runs),
            "cycle_ms": cpu_ms(lambda: one_cycle(build, look), runs),
            "verdict_ms": cpu_ms(lambda: verdict(desired, observed, first), runs),
            "metrics_ms": metrics_cost(desired, observed, runs),
        }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--nodes", type=int, nargs="+", default=[3, 30, 89])
    parser.add_argument("--idle", action="store_true", help="also measure the real idle demo")
    parser.add_argument("--seconds", type=float, default=60.0, help="--idle's duration")
    args = parser.parse_args()
    result: dict[str, Any] = {
        "unit": "CPU milliseconds (time.process_time), median/min/max over runs",
        "runs": args.runs,
        "cycle": "observe + plan with build_desired cached, against bench/converged_world.py",
        "sizes": [one_size(n, args.runs) for n in args.nodes],
    }
    if args.idle:
        from bench.idle import measure_idle

        result["idle_demo"] = measure_idle(args.seconds)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
