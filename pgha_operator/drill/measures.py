"""The drill's measures: each figure the checker reports, as one pure function of the
writers', the prober's or the watcher's records (drill/checker.py puts them together).

Times are time.monotonic() values. A node accepts writes over a run of consecutive probes
that committed, from the first one's question to the last one's answer (`accepting_spans`):
an upper bound, so a real overlap of two primaries is never missed.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

from pgha_operator.drill.prober import NodeState, Probe
from pgha_operator.drill.watch import WatchSample
from pgha_operator.drill.writer import Attempt

Span = tuple[float, float]


def write_gap(
    ok_times: Iterable[float], start: float, end: float
) -> tuple[float | None, float | None]:
    """(longest stretch without an ack that ends after `start`, when the ack closing it
    came). The stretch begins at the last ack before `start` (or at `start` if none).
    When writes had not resumed by `end`, the stretch runs to `end` and the second value
    is None. None, None when `end` <= `start`."""
    if end <= start:
        return None, None
    times = sorted(ok_times)
    prev = max((t for t in times if t <= start), default=start)
    best, resumed = 0.0, None
    for t in (t for t in times if start < t <= end):
        if t - prev > best:
            best, resumed = t - prev, t
        prev = t
    if end - prev > best:
        return end - prev, None  # no ack since: writes had not resumed by `end`
    return best, resumed


def accepting_spans(probes: Iterable[Probe]) -> dict[str, list[Span]]:
    """Per node, the runs of consecutive probes that committed a write, each as
    (first question sent, last answer received)."""
    by_node: dict[str, list[Probe]] = {}
    for p in probes:
        by_node.setdefault(p.node, []).append(p)
    spans: dict[str, list[Span]] = {}
    for node, items in by_node.items():
        items.sort(key=lambda p: p.sent)
        runs: list[Span] = []
        start: float | None = None
        end = 0.0
        for p in items:
            if p.state == NodeState.WRITABLE:
                if start is None:
                    start = p.sent
                end = p.done
            elif start is not None:
                runs.append((start, end))
                start = None
        if start is not None:
            runs.append((start, end))
        spans[node] = runs
    return spans


def dual_primary(spans: dict[str, list[Span]]) -> tuple[float, tuple[str, ...]]:
    """Total time at least two nodes were accepting writes, and which nodes took part."""
    events: list[tuple[float, int, str]] = []
    for node, runs in spans.items():
        for s, e in runs:
            events.append((s, 1, node))
            events.append((e, -1, node))
    # At equal times, ends before starts: touching spans do not overlap.
    events.sort(key=lambda ev: (ev[0], ev[1]))
    active: dict[str, int] = {}
    total, since = 0.0, 0.0
    involved: set[str] = set()
    for t, delta, node in events:
        before = sum(1 for n in active.values() if n > 0)
        active[node] = active.get(node, 0) + delta
        after = sum(1 for n in active.values() if n > 0)
        if before < 2 <= after:
            since = t
            involved.update(n for n, c in active.items() if c > 0)
        elif before >= 2 > after:
            total += t - since
        if after >= 2:
            involved.update(n for n, c in active.items() if c > 0)
    return total, tuple(sorted(involved))


def stopped_writes(
    runs: Sequence[Span], start: float, observed_until: float, tolerance: float = 1.0
) -> float | None:
    """Seconds from `start` until the node's last accepting run begun before `start`
    ended (0 if it ended before). None when the node was not seen accepting writes before
    the fault, or when that run lasted to the end of the observation (it never stopped)."""
    earlier = [r for r in runs if r[0] <= start]
    if not earlier:
        return None
    _, end = earlier[-1]
    if end >= observed_until - tolerance:
        return None
    return max(0.0, end - start)


def rejoined_at(
    samples: Iterable[WatchSample],
    pg_targets: Collection[str],
    etcd_targets: Collection[str],
    after: float,
) -> float | None:
    """First sample after `after` where every PostgreSQL target is a streaming replica
    (its own GET /patroni) and every etcd target is healthy."""
    for s in samples:
        if s.at < after:
            continue
        nodes_ok = all(
            (v := s.nodes.get(n)) is not None and v.streaming_replica for n in pg_targets
        )
        if nodes_ok and set(etcd_targets) <= s.etcd_healthy:
            return s.at
    return None


def read_only_window(
    probes: Iterable[Probe], start: float, healed: float, min_held: float = 1.0
) -> tuple[float, float] | None:
    """(seconds until the last write accepted anywhere during the fault, seconds no node
    accepted one after that until `healed`); None if that quiet stretch is shorter than
    `min_held` (ten probe rounds): the cluster did not become read-only."""
    last = start
    for p in probes:
        if p.state == NodeState.WRITABLE and p.sent < healed:
            last = max(last, p.done)
    if healed - last < min_held:
        return None
    return last - start, healed - last


def new_primary(spans: dict[str, list[Span]], old: str | None, after: float) -> str | None:
    """The node accepting writes at the end, if it is not `old` (None if unchanged)."""
    last = [(runs[-1][1], node) for node, runs in spans.items() if runs and runs[-1][1] > after]
    if not last:
        return None
    node = max(last)[1]
    return None if node == old else node


def first_accepted(runs: Sequence[Span], after: float) -> float | None:
    """When the node's first accepting run that began after `after` began."""
    return min((s for s, _ in runs if s > after), default=None)


def stale_acks(acked: Sequence[Attempt], old_address: str | None, after: float) -> int:
    """Writes acknowledged by the old primary although the load balancer had already
    sent an earlier write (after `after`) to another node: a client of the load balancer
    saw two primaries."""
    if old_address is None:
        return 0
    firsts = [a.finished for a in acked if a.started > after and a.server != old_address]
    if not firsts:
        return 0
    switched = min(firsts)
    return sum(1 for a in acked if a.started > switched and a.server == old_address)
