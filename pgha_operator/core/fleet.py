"""Many clusters under one operator (`run -f DIR`), the pure rules: which clusters' loops to
start and stop given the manifest files found, and whether every loop is alive.

A cluster's loop runs while a readable manifest file names it. A file that is refused
(bad YAML, an invalid manifest) changes nothing: the loops of its clusters go on with their
last accepted manifest, and no new loop starts from it. A removed file, or a file that no
longer names a cluster, stops that cluster's loop: the operator stops managing it, and
nothing of the cluster is touched.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass, field


@dataclass(frozen=True)
class FileScan:
    """One manifest file of the directory: the clusters it names, or None when refused."""

    names: tuple[str, ...] | None
    problem: str | None = None


@dataclass(frozen=True)
class FleetChanges:
    start: Mapping[str, str] = field(default_factory=dict)  # cluster -> its manifest file
    stop: frozenset[str] = frozenset()
    # A name defined in several files starts nowhere until only one file defines it.
    conflicts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def fleet_changes(
    files: Mapping[str, FileScan],
    running: Mapping[str, str],
    stopping: Set[str] = frozenset(),
) -> FleetChanges:
    """`running`: cluster -> the file its loop reads; `stopping`: loops told to stop that
    have not ended yet (a cluster moved to another file starts once its old loop ended)."""
    defined: dict[str, list[str]] = {}
    for path, scan in sorted(files.items()):
        for name in scan.names or ():
            defined.setdefault(name, []).append(path)
    stop = set()
    for name, path in running.items():
        scan = files.get(path)
        if scan is None or (scan.names is not None and name not in scan.names):
            stop.add(name)
    start: dict[str, str] = {}
    conflicts: dict[str, tuple[str, ...]] = {}
    for name, paths in defined.items():
        if name in running or name in stopping:
            continue
        if len(paths) > 1:
            conflicts[name] = tuple(paths)
            continue
        start[name] = paths[0]
    return FleetChanges(start, frozenset(stop), conflicts)


@dataclass(frozen=True)
class LoopHealth:
    ready: bool  # every loop has completed its first cycle
    hung: tuple[tuple[str, float], ...]  # (cluster, seconds since its loop last moved)

    @property
    def alive(self) -> bool:
        return not self.hung


def loop_health(
    loops: Mapping[str, tuple[float, float | None]], now: float, hung_after: float
) -> LoopHealth:
    """`loops`: cluster -> (when its loop started, when it last completed a cycle or None),
    in time.monotonic() seconds. A loop that has not moved for `hung_after` is hung, even
    while every other loop is fine: one hung loop must not hide behind the others."""
    hung = []
    for name, (started, beat) in sorted(loops.items()):
        since = now - (beat if beat is not None else started)
        if since > hung_after:
            hung.append((name, round(since, 1)))
    ready = all(beat is not None for _, beat in loops.values())
    return LoopHealth(ready, tuple(hung))
