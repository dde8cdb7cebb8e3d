"""A failover's steps, from the fault's start (pure): death seen -> decided (the guards'
observations gathered: other nodes, etcd, the provider) -> fenced (powered off) -> key released
(the fencer's journal, shell/state/fence_journal.py) -> new primary accepted a write (the
prober) -> HAProxy has it UP (the load-balancer watcher) -> first acknowledged write
through it (the writers). Each moment is seconds from the fault's start, None when the run
did not have that step (no fence: the lease decided; a switchover)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pgha_operator.drill.lbwatch import LbSample

STEPS = ("deathSeen", "decided", "fenced", "keyReleased", "promoted", "haproxyUp", "firstWrite")


def fence_of(records: Iterable[Mapping[str, Any]], started: float, healed: float) -> dict | None:
    """The first fence whose death was seen while the fault lasted."""
    for r in records:
        seen = r.get("seen")
        if isinstance(seen, (int, float)) and started <= seen <= healed:
            return dict(r)
    return None


def lb_up_at(samples: Sequence[LbSample], server: str | None, after: float) -> float | None:
    """When HAProxy first had `server` UP in its primary backend, after `after`."""
    if server is None:
        return None
    return next((s.at for s in samples if s.at > after and server in s.up), None)


def timeline(
    started: float,
    fence: Mapping[str, Any] | None,
    promoted: float | None,
    haproxy_up: float | None,
    first_write: float | None,
) -> dict[str, Any]:
    """The run's moments (seconds from `started`, absolute times in) and how death was seen."""

    def rel(t: Any) -> float | None:
        return None if not isinstance(t, (int, float)) else round(t - started, 3)

    fence = fence or {}
    moments = {
        "deathSeen": rel(fence.get("seen")),
        "decided": rel(fence.get("decided")),
        "fenced": rel(fence.get("fenced")),
        "keyReleased": rel(fence.get("released")),
        "promoted": rel(promoted),
        "haproxyUp": rel(haproxy_up),
        "firstWrite": rel(first_write),
    }
    return {**moments, "seenBy": fence.get("seenBy")}


def medians(timelines: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per moment: median, min and max over the runs that had it; per step: the median of
    its duration (from the step before it, in each run having both)."""
    moments: dict[str, Any] = {}
    steps: dict[str, Any] = {}
    for i, key in enumerate(STEPS):
        values = [t[key] for t in timelines if t.get(key) is not None]
        moments[key] = _spread(values)
        if i:
            prev = STEPS[i - 1]
            durations = [
                t[key] - t[prev]
                for t in timelines
                if t.get(key) is not None and t.get(prev) is not None
            ]
            steps[f"{prev}->{key}"] = _spread(durations)
    return {"moments": moments, "steps": steps, "runs": len(timelines)}


def _spread(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }
