"""shell/switchover_assist.py with fakes: Patroni's POST runs beside the operator's looks,
the key is released once (with the lease guard) when handover() allows it, never without a
lease, and Patroni's own answer (or refusal) is the switchover's."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from pgha_operator.core.leadership import LeaseGuard
from pgha_operator.shell.clients import KeyHolder
from pgha_operator.shell.clients.errors import ComponentError
from pgha_operator.shell.hosts.base import CommandResult
from pgha_operator.shell.switchover import BorrowedLease
from pgha_operator.shell.switchover_assist import OldPrimary, Parties, assisted_switchover

RUNNING = "Database cluster state:               in production\n"
SHUT = (
    "Database cluster state:               shut down\n"
    "Latest checkpoint location:           0/3000028\n"
)
OWN = 0.8  # seconds Patroni takes on its own path, in these tests
GUARD = LeaseGuard("/pgha-operator/demo/leader", "host/pid 1/abc", 7)


class Host:
    """The old primary: its control file says "shut down" from the `shut_after`-th look."""

    name = "pg1"

    def __init__(self, shut_after: int = 3, ready: str = "") -> None:
        self.looks, self.shut_after, self.ready = 0, shut_after, ready

    def run(self, argv: Sequence[str], **_: Any) -> CommandResult:
        if "find" in argv:
            return CommandResult(tuple(argv), 0, self.ready, "")
        self.looks += 1
        text = SHUT if self.looks >= self.shut_after else RUNNING
        return CommandResult(tuple(argv), 0, text, "")


class Replica:
    def __init__(self, received: int = 0x3000090) -> None:
        self.received = received

    def received_wal(self) -> tuple[bool, int | None]:
        return True, self.received


class Etcd:
    def __init__(self, deletes: bool = True) -> None:
        self.calls: list[tuple[str, str, LeaseGuard | None]] = []
        self.deletes = deletes
        self.released = threading.Event()

    def delete_key_if_value(self, key: str, value: str, guard: LeaseGuard | None = None) -> bool:
        self.calls.append((key, value, guard))
        if self.deletes:
            self.released.set()
        return self.deletes


class Patroni:
    """Answers once the key is gone, or after its own path (2.5 s in life, OWN here); or
    refuses at once."""

    def __init__(self, etcd: Etcd, refuse: bool = False) -> None:
        self.etcd, self.refuse = etcd, refuse
        self.asked: tuple[str, str | None] | None = None

    def switchover(self, leader: str, candidate: str | None = None) -> str:
        self.asked = (leader, candidate)
        if self.refuse:
            raise ComponentError("412 candidate name does not match", url="pg1", status=412)
        self.etcd.released.wait(OWN)
        return f'Successfully switched over to "{candidate}"'


class Lease:
    def __init__(self, guard: LeaseGuard | None) -> None:
        self._guard = guard

    def guard(self) -> LeaseGuard | None:
        return self._guard


def parties(host: Host, etcd: Etcd, patroni: Patroni, replica: Replica | None = None) -> Parties:
    return Parties(
        leader="pg1",
        candidate="pg2",
        old=OldPrimary(host, "/usr/lib/postgresql/15/bin", "/var/lib/pg"),  # type: ignore[arg-type]
        patroni=patroni,  # type: ignore[arg-type]
        replica=replica or Replica(),  # type: ignore[arg-type]
        etcd=etcd,  # type: ignore[arg-type]
        leader_key="/service/demo/leader",
    )


def test_releases_the_key_once_under_the_lease_guard_when_nothing_can_be_lost() -> None:
    etcd = Etcd()
    patroni = Patroni(etcd)
    started = time.monotonic()
    outcome = assisted_switchover(parties(Host(shut_after=3), etcd, patroni), Lease(GUARD))
    assert outcome.release, outcome.reason
    assert etcd.calls == [("/service/demo/leader", "pg1", GUARD)]
    assert patroni.asked == ("pg1", "pg2")
    assert time.monotonic() - started < OWN / 2  # well before Patroni's own path


def test_never_releases_without_a_lease() -> None:
    etcd = Etcd()
    outcome = assisted_switchover(parties(Host(shut_after=1), etcd, Patroni(etcd)), Lease(None))
    assert not outcome.release and "holds no lease" in outcome.reason
    assert etcd.calls == []


def test_waits_for_the_archiver_and_then_leaves_it_to_patroni() -> None:
    etcd = Etcd()
    host = Host(shut_after=1, ready="/d/pg_wal/archive_status/000000010000000000000003.ready\n")
    outcome = assisted_switchover(parties(host, etcd, Patroni(etcd)), Lease(GUARD), window=0.3)
    assert not outcome.release and "within 0s" in outcome.reason
    assert etcd.calls == []


def test_a_candidate_short_of_the_checkpoint_gets_no_key() -> None:
    etcd = Etcd()
    behind = Replica(received=0x3000028)  # up to the checkpoint record's start only
    p = parties(Host(shut_after=1), etcd, Patroni(etcd), behind)
    outcome = assisted_switchover(p, Lease(GUARD), window=0.3)
    assert not outcome.release and etcd.calls == []


def test_a_key_already_gone_leaves_patroni_going_on() -> None:
    etcd = Etcd(deletes=False)
    outcome = assisted_switchover(parties(Host(shut_after=1), etcd, Patroni(etcd)), Lease(GUARD))
    assert not outcome.release and "not released" in outcome.reason
    assert len(etcd.calls) == 1  # tried once, then left it to Patroni


def test_patronis_refusal_is_the_switchovers_error() -> None:
    etcd = Etcd()
    with pytest.raises(ComponentError, match="412"):
        assisted_switchover(
            parties(Host(shut_after=10**6), etcd, Patroni(etcd, refuse=True)), Lease(GUARD)
        )
    assert etcd.calls == []


class LeaseKeys:
    def __init__(self, held: KeyHolder | None = None, fails: bool = False) -> None:
        self.held, self.fails = held, fails

    def holder(self, key: str) -> KeyHolder | None:
        assert key == "/pgha-operator/demo/leader"
        if self.fails:
            raise ComponentError("etcd: connection refused", url="etcd")
        return self.held


def test_borrowed_lease_is_the_running_operators_own_on_this_host() -> None:
    mine = KeyHolder(f"{socket.gethostname()}/pid 4242/ab12cd34", 17, 99)
    lease = BorrowedLease(LeaseKeys(mine), "demo", "pid 4242 (run)")  # type: ignore[arg-type]
    assert lease.guard() == LeaseGuard("/pgha-operator/demo/leader", mine.value, 17)


@pytest.mark.parametrize(
    ("keys", "holder"),
    [
        (LeaseKeys(KeyHolder(f"{socket.gethostname()}/pid 4243/x", 1, 1)), "pid 4242 (run)"),
        (LeaseKeys(KeyHolder("otherhost/pid 4242/x", 1, 1)), "pid 4242 (run)"),
        (LeaseKeys(None), "pid 4242 (run)"),
        (LeaseKeys(fails=True), "pid 4242 (run)"),
        (LeaseKeys(KeyHolder(f"{socket.gethostname()}/pid 4242/x", 1, 1)), "another operator"),
    ],
)
def test_no_borrowed_guard_unless_that_operator_leads(keys: LeaseKeys, holder: str) -> None:
    """A standby beside us, another host's operator, no leader, etcd silent, an unknown
    holder: Patroni's own path."""
    assert BorrowedLease(keys, "demo", holder).guard() is None  # type: ignore[arg-type]
