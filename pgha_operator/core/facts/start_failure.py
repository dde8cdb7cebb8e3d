"""Why a PostgreSQL replica is in Patroni's `start failed`: a pure parser of its log tail.

The shell (shell/start_failures.py) reads the last lines of the node's Patroni log, which
holds PostgreSQL's own output too (Patroni starts the postmaster with its stdout/stderr);
this module only classifies them. Only some causes are fixed by cloning the replica afresh
(POST /reinitialize): a timeline that diverged from the primary's, or a pg_rewind that
failed. A configuration error or anything unknown is left alone and reported: a reinit
would wipe data without fixing the cause, and it would loop.

Fixtures: tests/unit/fixtures/start_failed_*.log, pg_*.log (real PostgreSQL 15 output).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Cause(StrEnum):
    DIVERGED_TIMELINE = "diverged timeline"
    REWIND_FAILED = "rewind failed"
    CONFIG_ERROR = "config error"
    UNKNOWN = "unknown cause"


# Causes a fresh clone from the primary fixes.
REINIT_FIXES = frozenset({Cause.DIVERGED_TIMELINE, Cause.REWIND_FAILED})

_PATTERNS: tuple[tuple[Cause, re.Pattern[str]], ...] = tuple(
    (cause, re.compile(pattern))
    for cause, pattern in (
        # PostgreSQL: this data directory's history is not an ancestor of the primary's.
        (Cause.DIVERGED_TIMELINE, r"requested timeline \d+ is not a child of this server's"),
        (Cause.DIVERGED_TIMELINE, r"according to history file, WAL location \S+ belongs to"),
        (Cause.DIVERGED_TIMELINE, r"new timeline \d+ forked off current database system"),
        (Cause.DIVERGED_TIMELINE, r"requested starting point \S+ on timeline \d+ is not in"),
        (Cause.DIVERGED_TIMELINE, r"requested starting point \S+ is ahead of the WAL flush"),
        # pg_rewind's own errors, and Patroni's verdict on them.
        (Cause.REWIND_FAILED, r"pg_rewind: (error|fatal):"),
        (Cause.REWIND_FAILED, r"Failed to rewind from healthy primary"),
        # PostgreSQL refuses its configuration or its data directory as it is.
        (Cause.CONFIG_ERROR, r"configuration file \".*\" contains errors"),
        (Cause.CONFIG_ERROR, r"invalid value for parameter \""),
        (Cause.CONFIG_ERROR, r"is outside the valid range for parameter \""),
        (Cause.CONFIG_ERROR, r"unrecognized configuration parameter \""),
        (Cause.CONFIG_ERROR, r"parameter \"\S+\" cannot be changed without restarting"),
        (Cause.CONFIG_ERROR, r"data directory \".*\" has invalid permissions"),
        (Cause.CONFIG_ERROR, r"could not map anonymous shared memory"),
        (Cause.CONFIG_ERROR, r"could not create any TCP/IP sockets"),
        (Cause.CONFIG_ERROR, r"insufficient parameter settings"),  # below the primary's
    )
)
# Any other PostgreSQL line that explains a failed start: the reason of an unknown cause.
_SEVERE = re.compile(r"\b(FATAL|PANIC):\s")
# ...except what clients are told while it starts or stops: an effect, not a cause.
_NOISE = re.compile(r"the database system is (starting up|shutting down)|terminating connection")
# "2026-11-28 04:53:26.238 UTC [24915] FATAL:  x" -> "FATAL: x"; likewise Patroni's
# "2026-11-28 04:53:26,238 ERROR: x". The time and pid change on every retry; the reason
# must not, or the status would change every cycle.
_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[.,]\d+ (?:[A-Z]{2,5} )?(?:\[\d+\] )?")
MAX_REASON = 300


@dataclass(frozen=True)
class StartFailure:
    cause: Cause
    reason: str  # the log line that says so, without its time stamp

    @property
    def reinit_fixes(self) -> bool:
        return self.cause in REINIT_FIXES

    @property
    def describe(self) -> str:
        return f"{self.cause}: {self.reason}" if self.reason else str(self.cause)


def parse_start_failure(log_tail: str) -> StartFailure:
    """The newest line that names a known cause wins: the log may still hold older
    incidents, and Patroni retries the start every loop, so the current cause is last."""
    lines = [line.strip() for line in log_tail.splitlines() if line.strip()]
    for line in reversed(lines):
        for cause, pattern in _PATTERNS:
            if pattern.search(line):
                return StartFailure(cause, _reason(line))
    severe = next(
        (line for line in reversed(lines) if _SEVERE.search(line) and not _NOISE.search(line)),
        "",
    )
    return StartFailure(Cause.UNKNOWN, _reason(severe) or "no error in the log tail")


def _reason(line: str) -> str:
    text = _PREFIX.sub("", line)
    text = re.sub(r"^(LOG|FATAL|PANIC|ERROR|WARNING|INFO|DETAIL):\s+", r"\1: ", text)
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"
