"""What one cycle reports, and how its outcome reads (phase, decision) for status and logs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pgha_operator.core import conditions as cond
from pgha_operator.core.actions import Action
from pgha_operator.core.brief import brief
from pgha_operator.core.errors import PermanentError, TemporaryError
from pgha_operator.core.facts.observed import Observed
from pgha_operator.core.plan import Desired, Plan
from pgha_operator.core.spec import Cluster
from pgha_operator.shell.execute import Outcome
from pgha_operator.shell.fencer import Fencer


@dataclass
class CycleReport:
    plan: Plan
    observed: Observed
    decision: str
    phase: str
    converged: bool
    error: str | None
    permanent: bool
    status: dict[str, Any]
    retry_after: float | None = None  # a TemporaryError's own delay before the next cycle
    done: tuple[Action, ...] = ()  # the actions executed this cycle
    failed: Action | None = None  # the action whose error stopped the execution


@dataclass(frozen=True)
class Verdict:
    conditions: tuple[cond.Condition, ...]
    phase: str
    decision: str
    error: str | None = None
    permanent: bool = False
    retry_after: float | None = None
    done: tuple[Action, ...] = ()  # the actions executed this cycle
    failed: Action | None = None  # the action whose error stopped the execution


def verdict(
    desired: Desired,
    observed: Observed,
    the_plan: Plan,
    outcome: Outcome | None = None,
    certificate_days: float | None = None,
) -> Verdict:
    """Phase and the one-line decision of a cycle, as `status` shows them."""
    error = outcome.error if outcome else None
    exc = outcome.exception if outcome else None
    permanent = isinstance(exc, PermanentError)
    conditions = cond.assess(desired, observed, certificate_days)
    # A temporary error (retried next cycle) is progress, not failure.
    phase = cond.phase(conditions, the_plan, error if permanent else None)
    decision = the_plan.decision
    if error:
        decision = f"failed: {error}"
    elif the_plan.empty and phase != "Converged" and not the_plan.blocked:
        # (blocked: the plan's own decision, e.g. TwoPrimaries, is the one to show)
        waiting = next(c for c in conditions if not c.status)
        decision = f"waiting: {waiting.type} {waiting.reason}"
    retry_after = exc.delay if isinstance(exc, TemporaryError) else None
    done = tuple(outcome.done) if outcome else ()
    failed = the_plan.actions[len(done)] if error and len(done) < len(the_plan.actions) else None
    # One short line: a component's error page or a long list never fills a decision.
    decision = brief(decision)
    return Verdict(conditions, phase, decision, error, permanent, retry_after, done, failed)


def fencing_status(cluster: Cluster, can_fence: bool, fencer: Fencer | None) -> dict[str, Any]:
    """The `fencing` block of status: the mode, and what the fencer watches and decided."""
    return {
        "mode": cluster.spec.failover.fencing,
        "available": can_fence,
        "watching": fencer.leader if fencer else None,
        "lastDecision": fencer.last_decision if fencer else None,
        "note": None
        if can_fence
        else "this provider cannot power machines off: failover waits for the leader lease",
    }


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
