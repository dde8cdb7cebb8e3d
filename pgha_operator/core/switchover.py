"""The switchover a user asks for (`pgha-operator switchover [--to NODE]`): which one, or
why none can run; and when the operator may hand Patroni's leader key over early (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from pgha_operator.core.actions import Switchover
from pgha_operator.core.errors import PermanentError
from pgha_operator.core.facts.controldata import ControlData, format_lsn
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


# --- the assisted switchover: release the leader key as soon as nothing can be lost ----------


@dataclass(frozen=True)
class HandoverView:
    """What the operator saw while Patroni demotes the old primary (shell/switchover_assist)."""

    guarded: bool  # this operator holds its lease: a key release can carry its guard
    patroni_done: bool  # Patroni's POST /switchover answered: its own path finished
    elapsed: float  # seconds since the switchover was requested
    window: float  # seconds the assistance may last before Patroni's path is left alone
    control: ControlData | None  # the old primary's pg_controldata (None: not readable)
    archive_pending: int | None  # WAL files it still has to archive (None: not readable)
    candidate_in_recovery: bool | None  # None: the candidate did not answer
    candidate_received: int | None  # pg_last_wal_receive_lsn() on the candidate


@dataclass(frozen=True)
class Handover:
    release: bool  # delete Patroni's leader key now (guarded, still naming the old primary)
    final: bool  # no point in looking again: release now, or leave it to Patroni
    reason: str


def handover(view: HandoverView) -> Handover:
    """Whether the old primary provably took its last write and the candidate holds all of
    it. A clean shutdown writes the shutdown checkpoint, then ("shut down" in the control
    file) walsenders ship everything up to it; a candidate that received WAL past that
    record's start has every commit. The key is released then, ~2 s before Patroni's own
    demote would (it polls the stop once a second and sleeps another second)."""
    if not view.guarded:
        return Handover(False, True, "this operator holds no lease: Patroni's own path")
    if view.patroni_done:
        return Handover(False, True, "Patroni finished the switchover on its own")
    if view.candidate_in_recovery is False:
        return Handover(False, True, "the candidate is no replica any more")
    if view.elapsed > view.window:
        return Handover(
            False, True, f"no safe early release within {view.window:.0f}s: Patroni's own path"
        )
    control = view.control
    if control is None or not control.shut_down or control.checkpoint_lsn is None:
        state = control.state if control else "unknown"
        return Handover(False, False, f"old primary not shut down yet ({state or 'unknown'})")
    checkpoint = format_lsn(control.checkpoint_lsn)
    if view.archive_pending is None or view.archive_pending > 0:
        # Patroni kills a postmaster that lost its key while still primary: an archiver
        # cut off mid-file would leave a hole in the archive.
        pending = "unknown" if view.archive_pending is None else str(view.archive_pending)
        return Handover(False, False, f"old primary still archiving ({pending} WAL files)")
    received = view.candidate_received
    if view.candidate_in_recovery is None or received is None:
        return Handover(False, False, "candidate's received WAL position unknown")
    if received <= control.checkpoint_lsn:
        return Handover(
            False,
            False,
            f"candidate received {format_lsn(received)}, shutdown checkpoint at {checkpoint}",
        )
    return Handover(
        True,
        True,
        f"old primary shut down at checkpoint {checkpoint}; candidate received "
        f"{format_lsn(received)}",
    )
