"""shell/start_failures.py: which log is read where, and only for stuck members."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pgha_operator.core import topology
from pgha_operator.core.facts.start_failure import Cause
from pgha_operator.core.facts.types import PatroniFacts, PatroniMember
from pgha_operator.shell.hosts.base import CommandResult, HostError
from pgha_operator.shell.start_failures import log_tail_command, read_start_failures

TAIL = (Path(__file__).parent / "fixtures" / "start_failed_pg_timeline_not_child.log").read_text()


class FakeHost:
    def __init__(self, name: str, calls: list[tuple[str, tuple[str, ...]]], fail: bool) -> None:
        self.name, self.calls, self.fail = name, calls, fail

    def run(self, argv: Sequence[str], **_: Any) -> CommandResult:
        self.calls.append((self.name, tuple(argv)))
        if self.fail:
            raise HostError(f"{self.name}: unreachable")
        return CommandResult(tuple(argv), 0, TAIL, "")


class FakeProvider:
    def __init__(self, service_manager: str, unreachable: frozenset[str] = frozenset()) -> None:
        self.service_manager = service_manager
        self.calls: list[tuple[str, tuple[str, ...]]] = []
        self.unreachable = unreachable

    def layout(self, name: str) -> topology.Layout:
        return topology.layout(f"/srv/pgha/demo/machines/{name}")

    def host(self, name: str) -> FakeHost:
        return FakeHost(name, self.calls, name in self.unreachable)


def member(name: str, state: str) -> PatroniMember:
    return PatroniMember(name, "127.0.0.1", 5432, "http://x", "replica", state)


FACTS = PatroniFacts(
    reachable=True,
    members=(
        member("node1", "running"),
        member("node2", "start failed"),
        member("node3", "streaming"),
        member("node4", "start failed"),
    ),
)


def test_local_machines_tail_the_supervisor_log_and_systemd_the_journal() -> None:
    assert log_tail_command(FakeProvider("local"), "node2", "demo") == [  # type: ignore[arg-type]
        "tail", "-n", "500", "/srv/pgha/demo/machines/node2/var/log/pgha/patroni.log",
    ]  # fmt: skip
    assert log_tail_command(FakeProvider("systemd"), "node2", "demo")[:3] == [  # type: ignore[arg-type]
        "journalctl", "-u", "pgha-demo-patroni.service",
    ]  # fmt: skip


def test_only_stuck_members_on_machines_that_are_up_are_read() -> None:
    provider = FakeProvider("local", unreachable=frozenset({"node4"}))
    found = read_start_failures(provider, FACTS, {"node1", "node2", "node3", "node4"}, "demo")  # type: ignore[arg-type]
    assert {n: f.cause for n, f in found.items()} == {"node2": Cause.DIVERGED_TIMELINE}
    assert [name for name, _ in provider.calls] == ["node2", "node4"]
    quiet = FakeProvider("local")
    assert read_start_failures(quiet, FACTS, {"node1", "node3"}, "demo") == {}  # type: ignore[arg-type]
    assert quiet.calls == []
