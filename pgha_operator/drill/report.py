"""What a drill hands back: the result of all runs (JSON for `--json`), and each run's raw
log for a post-mortem."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pgha_operator.drill.checker import FaultWindow, RunFigures
from pgha_operator.drill.prober import Prober
from pgha_operator.drill.timeline import medians
from pgha_operator.drill.watch import Watcher
from pgha_operator.drill.writer import ClientTimeouts, Writer


@dataclass
class DrillResult:
    cluster: str
    scenario: str
    clients: int
    timeouts: ClientTimeouts
    profile: str
    synchronous: str
    ttl: int
    runs: list[RunFigures]
    operator: str  # "running" (an operator already ran) or "drill" (the drill ran one)
    logs: list[str] = field(default_factory=list)  # raw log of each run

    @property
    def verdict(self) -> str:
        return "PASS" if self.runs and all(r.verdict == "PASS" for r in self.runs) else "FAIL"

    def to_json(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "scenario": self.scenario,
            "profile": self.profile,
            "synchronous": self.synchronous,
            "ttl": self.ttl,
            "clients": self.clients,
            "clientTimeouts": {
                "connectSeconds": self.timeouts.connect,
                "statementSeconds": self.timeouts.statement,
            },
            "operator": self.operator,
            "runs": [
                {**r.to_json(), **({"log": log} if log else {})}
                for r, log in zip(self.runs, self.logs or [None] * len(self.runs), strict=True)
            ],
            "timelineMedians": medians([r.timeline for r in self.runs if r.timeline]),
            "verdict": self.verdict,
        }


def save_run_log(
    state_dir: Path,
    run_id: str,
    window: FaultWindow,
    writer: Writer,
    prober: Prober,
    watcher: Watcher,
) -> Path:
    """Every attempt, probe and sample of the run, for a post-mortem, under
    <state dir>/drill/<run id>.json (times in seconds from the fault's start)."""
    t0 = window.started

    def rel(t: float) -> float:
        return round(t - t0, 4)

    body = {
        "runId": run_id,
        "fault": {**asdict(window), "started": 0.0, "healed": rel(window.healed)},
        "attempts": [
            [a.client, a.seq, rel(a.started), rel(a.finished), a.outcome.value, a.server, a.error]
            for a in writer.attempts
        ],
        "probes": [[p.node, rel(p.sent), rel(p.done), p.state.value] for p in prober.probes],
        "samples": [
            {
                "at": rel(s.at),
                "nodes": {n: v and asdict(v) for n, v in s.nodes.items()},
                "etcdHealthy": sorted(s.etcd_healthy),
            }
            for s in watcher.samples
        ],
    }
    path = state_dir / "drill" / f"{run_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body))
    return path
