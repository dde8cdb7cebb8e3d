"""The assisted switchover: Patroni still demotes and promotes (POST /switchover), and the
operator releases Patroni's leader key the moment nothing can be lost any more.

Patroni 4.1's demote stops PostgreSQL ~0.1 s after the request, then waits about two fixed
seconds before it releases the key (it polls the stop once a second, then sleeps a second
"to give replicas time"). Meanwhile the operator reads the old primary's control file and
the candidate's received WAL position every POLL seconds; core/switchover.handover()
decides. The release is one etcd transaction that checks the key still names the old
primary and that this operator's own lease key is unchanged (LeaseGuard), like the
fencer's. Any check that fails, or no release within WINDOW seconds, leaves the
switchover to Patroni's own path, which goes on untouched.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import structlog

from pgha_operator.core.errors import OperatorError
from pgha_operator.core.facts.controldata import ControlData, parse_controldata
from pgha_operator.core.leadership import LeaseGuard
from pgha_operator.core.switchover import Handover, HandoverView, handover
from pgha_operator.shell.clients import EtcdApi, PatroniApi, PostgresApi
from pgha_operator.shell.hosts.base import Host, HostError

log = structlog.get_logger("pgha-operator")

POLL = 0.02  # seconds between two looks: pg_controldata costs a few ms
WINDOW = 15.0  # seconds; Patroni's own path releases the key after ~2.5 s
COMMAND_TIMEOUT = 5.0


class LeaseGuardSource(Protocol):
    """The operator's leadership as a key release needs it (shell/leadership.py)."""

    def guard(self) -> LeaseGuard | None: ...


@dataclass(frozen=True)
class OldPrimary:
    """Reads on the old primary's machine: its control file and its archive queue."""

    host: Host
    pg_bin_dir: str
    pg_data: str

    def control(self) -> ControlData | None:
        try:
            res = self.host.run(
                ["env", "LC_ALL=C", f"{self.pg_bin_dir}/pg_controldata", "-D", self.pg_data],
                check=False,
                timeout=COMMAND_TIMEOUT,
            )
        except (HostError, OSError):
            return None
        return parse_controldata(res.stdout) if res.ok else None

    def archive_pending(self) -> int | None:
        """WAL files waiting for archive_command (`.ready` marks); 0 without archiving."""
        status = f"{self.pg_data}/pg_wal/archive_status"
        try:
            res = self.host.run(
                ["find", status, "-maxdepth", "1", "-name", "*.ready"],
                check=False,
                timeout=COMMAND_TIMEOUT,
            )
        except (HostError, OSError):
            return None
        return len(res.stdout.split()) if res.ok else None


@dataclass(frozen=True)
class Parties:
    leader: str
    candidate: str
    old: OldPrimary
    patroni: PatroniApi  # the old primary's REST API, with credentials
    replica: PostgresApi  # the candidate's PostgreSQL, as the superuser
    etcd: EtcdApi
    leader_key: str  # Patroni's, e.g. /service/demo/leader


def assisted_switchover(
    parties: Parties, lease: LeaseGuardSource | None, window: float = WINDOW
) -> Handover:
    """POST /switchover, release the key early when handover() says so, and return once
    Patroni answered (raising its refusal, e.g. 412, like a plain switchover)."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="switchover") as pool:
        answer = pool.submit(parties.patroni.switchover, parties.leader, parties.candidate)
        started = time.monotonic()
        outcome = _assist(parties, lease, answer, started, window)
        log.info(
            "switchover",
            leader=parties.leader,
            candidate=parties.candidate,
            assisted=outcome.release,
            after=round(time.monotonic() - started, 3),
            reason=outcome.reason,
        )
        answer.result()  # Patroni's own answer: its error, if any, is the switchover's
    return outcome


def _assist(
    parties: Parties,
    lease: LeaseGuardSource | None,
    answer: Future[str],
    started: float,
    window: float,
) -> Handover:
    guarded = lease is not None and lease.guard() is not None
    while True:
        decision = handover(_look(parties, guarded, answer, started, window))
        if decision.release:
            guard = lease.guard() if lease is not None else None  # as of now, not the start
            if guard is None:
                return Handover(False, True, "this operator lost its lease: Patroni's own path")
            released = _release(parties, guard)
            if released is True:
                return decision
            # Taken by Patroni's own release meanwhile, or our lease ended: Patroni goes on.
            return Handover(False, True, released)
        if decision.final:
            return decision
        time.sleep(POLL)


def _look(
    parties: Parties, guarded: bool, answer: Future[str], started: float, window: float
) -> HandoverView:
    control = parties.old.control() if guarded else None
    shut = control is not None and control.shut_down
    in_recovery, received = _received(parties.replica) if shut else (None, None)
    return HandoverView(
        guarded=guarded,
        patroni_done=answer.done(),
        elapsed=time.monotonic() - started,
        window=window,
        control=control,
        archive_pending=parties.old.archive_pending() if shut else None,
        candidate_in_recovery=in_recovery,
        candidate_received=received,
    )


def _received(replica: PostgresApi) -> tuple[bool | None, int | None]:
    try:
        return replica.received_wal()
    except OperatorError:
        return None, None


def _release(parties: Parties, guard: LeaseGuard) -> str | bool:
    """True, or why the key stayed."""
    try:
        if parties.etcd.delete_key_if_value(parties.leader_key, parties.leader, guard):
            return True
    except OperatorError as exc:
        return f"releasing the leader key failed ({exc}): Patroni's own path"
    return "leader key not released (Patroni released it, or this operator's lease ended)"
