"""The switchover a user asks for (`pgha-operator switchover [--to NODE]`): which one, or
why none can run (pure)."""

from __future__ import annotations

from pgha_operator.core.actions import Switchover
from pgha_operator.core.errors import PermanentError
from pgha_operator.core.facts.observed import Observed
from pgha_operator.core.plan import Desired
from pgha_operator.core.plan.patroni import switchover_candidate


def requested_switchover(desired: Desired, observed: Observed, to: str | None) -> Switchover:
    """From the running primary to `to` (default: the best replica); refused unless the
    target is a streaming replica."""
    patroni = observed.patroni
    leader = patroni.leader
    if leader is None or leader.name not in patroni.primaries:
        raise PermanentError(
            f"cluster {desired.cluster.name} has no running primary to switch over from"
        )
    candidate = to or switchover_candidate(desired, observed, leader.name)
    healthy = {m.name for m in patroni.members if m.state == "streaming"}
    if candidate is None or candidate == leader.name or candidate not in healthy:
        raise PermanentError(
            f"no healthy candidate: {candidate or 'none'} is not a streaming replica "
            f"(streaming: {', '.join(sorted(healthy)) or 'none'})"
        )
    return Switchover(leader.name, candidate, "as requested")
