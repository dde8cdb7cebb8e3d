"""plan(): a replica in `start failed` is reinitialised only for a cause a reinit fixes,
with backoff and a cap; anything else is reported as Degraded with its reason (issue 11)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pgha_operator.core import conditions as cond
from pgha_operator.core.actions import Reinitialize, WaitFor
from pgha_operator.core.facts.observed import Observed
from pgha_operator.core.facts.reinit import (
    ReinitRecord,
    dump_reinit_history,
    next_reinit_history,
    parse_reinit_history,
)
from pgha_operator.core.facts.start_failure import Cause, StartFailure
from pgha_operator.core.plan import plan
from pgha_operator.core.plan.reinit import REINIT_BACKOFF
from tests.unit.test_plan import converged
from tests.unit.test_plan_day2 import DEMO, desired_for

DESIRED = desired_for(DEMO)
NOW = 1_764_300_000.0
DIVERGED = StartFailure(Cause.DIVERGED_TIMELINE, "FATAL: requested timeline 2 is not a child")
REWIND = StartFailure(Cause.REWIND_FAILED, "ERROR: Failed to rewind from healthy primary: node1")
CONFIG = StartFailure(Cause.CONFIG_ERROR, 'FATAL: invalid value for parameter "shared_buffers"')
UNKNOWN = StartFailure(Cause.UNKNOWN, "FATAL: could not write lock file")


def stuck(
    failure: StartFailure | None, record: ReinitRecord | None = None, member: str = "node3"
) -> Observed:
    observed = converged(DESIRED)
    members = tuple(
        replace(m, state="start failed") if m.name == member else m
        for m in observed.patroni.members
    )
    return replace(
        observed,
        patroni=replace(observed.patroni, members=members),
        start_failures={member: failure} if failure else {},
        reinits={member: record} if record else {},
        now=NOW,
    )


def reinits(observed: Observed) -> list[tuple[str, str]]:
    return [(a.machine, a.reason) for a in plan(DESIRED, observed).actions if isinstance(a, Reinitialize)]  # fmt: skip


def waits(observed: Observed) -> list[str]:
    return [a.what for a in plan(DESIRED, observed).actions if isinstance(a, WaitFor)]


@pytest.mark.parametrize(
    ("case", "observed", "want"),
    [
        ("diverged, first time", stuck(DIVERGED),
         [("node3", "diverged timeline, attempt 1 of 3")]),
        ("rewind failed, first time", stuck(REWIND), [("node3", "rewind failed, attempt 1 of 3")]),
        ("diverged, backoff over", stuck(DIVERGED, ReinitRecord(1, NOW - REINIT_BACKOFF)),
         [("node3", "diverged timeline, attempt 2 of 3")]),
        ("backoff doubles", stuck(DIVERGED, ReinitRecord(2, NOW - 2 * REINIT_BACKOFF)),
         [("node3", "diverged timeline, attempt 3 of 3")]),
        # The bug: these were reinitialised at once, every cycle.
        ("config error", stuck(CONFIG), []),
        ("unknown cause", stuck(UNKNOWN), []),
        ("log unreadable", stuck(None), []),
        ("in backoff", stuck(DIVERGED, ReinitRecord(1, NOW - 10)), []),
        ("second backoff not over", stuck(DIVERGED, ReinitRecord(2, NOW - REINIT_BACKOFF)), []),
        ("cap reached", stuck(DIVERGED, ReinitRecord(3, NOW - 3600)), []),
    ],
)  # fmt: skip
def test_reinitialise_only_what_a_reinit_fixes(
    case: str, observed: Observed, want: list[tuple[str, str]]
) -> None:
    assert reinits(observed) == want, case


def test_backoff_is_a_wait_that_says_how_long() -> None:
    assert waits(stuck(DIVERGED, ReinitRecord(2, NOW - 5))) == [
        "120 s after reinitialising node3 before attempt 3 of 3 (diverged timeline)"
    ]


def test_no_reinit_without_a_healthy_primary_to_clone_from() -> None:
    observed = stuck(DIVERGED)
    assert (
        reinits(replace(observed, patroni=replace(observed.patroni, primaries=frozenset()))) == []
    )


@pytest.mark.parametrize(
    ("observed", "reason_part"),
    [
        (stuck(CONFIG), 'node3 is start failed (config error: FATAL: invalid value for parameter '
         '"shared_buffers"; not reinitialised: a fresh copy would not fix it)'),
        (stuck(UNKNOWN), "node3 is start failed (unknown cause: FATAL: could not write lock file"),
        (stuck(None), "node3 is start failed (cause unknown: its log could not be read)"),
        (stuck(DIVERGED, ReinitRecord(3, NOW - 3600)),
         "diverged timeline: FATAL: requested timeline 2 is not a child; gave up after 3 "
         "reinitialisations"),
    ],
)  # fmt: skip
def test_what_the_operator_leaves_alone_is_degraded_with_the_reason(
    observed: Observed, reason_part: str
) -> None:
    the_plan = plan(DESIRED, observed)
    conditions = cond.assess(DESIRED, observed)
    patroni = next(c for c in conditions if c.type == "PatroniConverged")
    assert reason_part in patroni.reason
    assert the_plan.empty and cond.phase(conditions, the_plan) == "Degraded"


def test_history_counts_attempts_and_forgets_a_member_seen_healthy() -> None:
    observed = stuck(DIVERGED)
    first = next_reinit_history({}, observed.patroni, ["node3"], NOW)
    assert first == {"node3": ReinitRecord(1, NOW)}
    second = next_reinit_history(first, observed.patroni, ["node3"], NOW + 60)
    assert second == {"node3": ReinitRecord(2, NOW + 60)}
    assert next_reinit_history(second, observed.patroni, [], NOW + 61) == second
    healthy = converged(DESIRED).patroni  # node3 streaming again
    assert next_reinit_history(second, healthy, [], NOW + 200) == {}


def test_history_file_round_trips_and_bad_content_is_named() -> None:
    history = {"node3": ReinitRecord(2, NOW)}
    assert parse_reinit_history(dump_reinit_history(history)) == history
    with pytest.raises(ValueError, match="not JSON"):
        parse_reinit_history("{")
    with pytest.raises(ValueError, match="member 'node3'"):
        parse_reinit_history('{"node3": {"attempts": "many"}}')
