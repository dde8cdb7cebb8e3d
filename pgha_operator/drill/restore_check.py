"""The restore drill's judgement (PURE): which acknowledged rows a clone restored to T must
hold, which it must not, and the RPO and RTO figures of one run."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pgha_operator.drill.pgclient import Outcome
from pgha_operator.drill.writer import Attempt

Row = tuple[int, int]  # (client, seq)


@dataclass(frozen=True)
class RestoreRun:
    number: int
    target: str  # T, as given to the clone
    backup: str  # the label of the backup the run took
    before: int  # acknowledged rows committed before T (must all be there)
    after: int  # rows sent after T (none may be there)
    missing: tuple[Row, ...]  # acknowledged before T, not in the clone
    extra: tuple[Row, ...]  # sent after T, in the clone
    rpo_seconds: float  # acknowledged writes before T the clone lost (0: none)
    rto_seconds: float | None  # restore started -> the clone accepted a write
    clone_timeline: int | None

    @property
    def verdict(self) -> str:
        ok = not self.missing and not self.extra and self.rto_seconds is not None
        return "PASS" if ok else "FAIL"

    def to_json(self) -> dict[str, object]:
        return {
            "run": self.number,
            "target": self.target,
            "backup": self.backup,
            "rowsBeforeTarget": self.before,
            "rowsAfterTarget": self.after,
            "missing": [list(r) for r in self.missing],
            "extra": [list(r) for r in self.extra],
            "rpoSeconds": round(self.rpo_seconds, 3),
            "rtoSeconds": None if self.rto_seconds is None else round(self.rto_seconds, 2),
            "cloneTimeline": self.clone_timeline,
            "verdict": self.verdict,
        }


@dataclass(frozen=True)
class Judged:
    before: tuple[Row, ...]
    after: tuple[Row, ...]
    missing: tuple[Row, ...]
    extra: tuple[Row, ...]
    rpo_seconds: float


def judge(attempts: Iterable[Attempt], target: float, restored: set[Row]) -> Judged:
    """`target` on the attempts' clock (monotonic). An acknowledged row whose answer came
    before T was committed before T: it must be restored. A row sent after T was committed
    after it: it must not. A row in flight across T may be either. RPO: from the earliest
    lost acknowledged row's acknowledgement to T (0 when none is lost)."""
    attempts = list(attempts)
    before = [a for a in attempts if a.outcome == Outcome.OK and a.finished < target]
    after = [a for a in attempts if a.started > target]
    missing = [a for a in before if (a.client, a.seq) not in restored]
    extra = [a for a in after if (a.client, a.seq) in restored]
    rpo = target - min(a.finished for a in missing) if missing else 0.0
    return Judged(
        tuple(_rows(before)), tuple(_rows(after)), tuple(_rows(missing)), tuple(_rows(extra)), rpo
    )


def _rows(attempts: Sequence[Attempt]) -> list[Row]:
    return sorted((a.client, a.seq) for a in attempts)


def spread(values: Sequence[float]) -> dict[str, float] | None:
    """Median, min and max of the runs' figures (None without any)."""
    if not values:
        return None
    return {
        "median": round(statistics.median(values), 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
    }
