"""Reinitialising a replica stuck in `start failed` (pure).

A reinit (Patroni's POST /reinitialize) deletes the replica's data directory and clones the
primary again. It is the cure for a replica whose timeline diverged from the primary's or
whose pg_rewind failed, and for nothing else: a configuration error would come back after
the clone (and the data would be gone), so those are only reported (conditions.py). Even
for a curable cause the operator backs off between attempts and stops after a few; the
attempts are its own memory (observed.reinits), the clock an input (observed.now).
"""

from __future__ import annotations

from pgha_operator.core.actions import Action, Reinitialize, WaitFor
from pgha_operator.core.desired import Desired
from pgha_operator.core.facts.observed import Observed
from pgha_operator.core.facts.reinit import ReinitRecord

STUCK_STATES = frozenset({"start failed"})  # Patroni does not leave these by itself
REINIT_BACKOFF = 60.0  # seconds after the first attempt; doubles after each further one
REINIT_MAX_ATTEMPTS = 3  # in a row; a member seen healthy again starts from zero


def reinit_backoff(attempts: int) -> float:
    """Seconds to wait after the `attempts`-th reinitialisation before the next one."""
    return REINIT_BACKOFF * 2 ** max(attempts - 1, 0)


def gave_up(record: ReinitRecord | None) -> bool:
    return record is not None and record.attempts >= REINIT_MAX_ATTEMPTS


def reinitialize_stuck(desired: Desired, observed: Observed) -> list[Action]:
    """One stuck replica per cycle, only for a cause a reinit fixes, only while a healthy
    primary exists to clone from, never before its backoff ran out, never past the cap."""
    leader = observed.patroni.leader
    if leader is None or leader.state != "running" or leader.name not in observed.patroni.primaries:
        return []
    stuck = sorted(
        m.name
        for m in observed.patroni.members
        if m.name in desired.topology.postgres and m.name != leader.name and m.state in STUCK_STATES
    )
    for name in stuck:
        failure = observed.start_failures.get(name)
        record = observed.reinits.get(name)
        if failure is None or not failure.reinit_fixes or gave_up(record):
            continue  # reported as Degraded with its reason (conditions.py)
        attempt = (record.attempts if record else 0) + 1
        if record is not None and observed.now < record.last + reinit_backoff(record.attempts):
            return [
                WaitFor(
                    f"{reinit_backoff(record.attempts):.0f} s after reinitialising {name} "
                    f"before attempt {attempt} of {REINIT_MAX_ATTEMPTS} ({failure.cause})"
                )
            ]
        return [Reinitialize(name, f"{failure.cause}, attempt {attempt} of {REINIT_MAX_ATTEMPTS}")]
    return []
