"""apply's pause while the cluster waits for a primary: it ends when a node answers
GET /primary, not a whole BUSY_SECONDS later (a new cluster's first write waits on the
cycle that sees its primary)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any

import pytest

from pgha_operator.core.desired import Plan
from pgha_operator.core.facts.observed import Observed
from pgha_operator.core.services import ServiceState
from pgha_operator.shell import loops
from pgha_operator.shell.clients import ComponentError
from pgha_operator.shell.cycle import CycleReport
from pgha_operator.shell.primary_wait import (
    PRIMARY_POLL_SECONDS,
    awaited_primaries,
    pause_for_next_cycle,
)
from tests.unit.test_plan import converged, demo_desired

DESIRED = demo_desired()
TOPO = DESIRED.topology


@dataclass
class Node:
    """GET /primary of one node: refused `refusing` times, then 503 until the clients'
    clock reaches `primary_at` polls, then 200."""

    owner: Probes
    url: str

    def is_primary(self) -> bool:
        self.owner.asked.append(self.url)
        if self.url in self.owner.refusing:
            raise ComponentError(f"Patroni GET {self.url}: connection refused", url=self.url)
        return self.url == self.owner.primary_url and self.owner.polls >= self.owner.primary_at


@dataclass
class Probes:
    primary_url: str = ""
    primary_at: int = 10**9
    refusing: set[str] = field(default_factory=set)
    asked: list[str] = field(default_factory=list)
    polls: int = 0

    def patroni(self, api_url: str, auth: Any = None, timeout: float | None = None) -> Node:
        return Node(self, api_url)


def waiting_for_a_primary() -> Observed:
    """Patroni runs on every node, none answers as primary yet (a bootstrap)."""
    observed = converged(DESIRED)
    return replace(observed, patroni=replace(observed.patroni, primaries=frozenset()))


def sleeper(probes: Probes, slept: list[float]) -> Any:
    def sleep(seconds: float) -> None:
        slept.append(seconds)
        probes.polls += 1

    return sleep


def test_the_pause_ends_at_the_poll_where_a_node_answers_as_primary() -> None:
    node1 = TOPO.rest_api_url(TOPO.postgres[0])
    probes = Probes(primary_url=node1, primary_at=2, refusing={TOPO.rest_api_url("node3")})
    slept: list[float] = []
    woke = pause_for_next_cycle(
        probes,  # type: ignore[arg-type]
        TOPO,
        waiting_for_a_primary(),
        0.5,
        sleeper(probes, slept),
    )
    assert woke and slept == [PRIMARY_POLL_SECONDS] * 2  # 0.2 s, not 0.5
    # Every node whose Patroni runs was asked (a refusing one is just not yet).
    assert set(probes.asked) == {TOPO.rest_api_url(n) for n in TOPO.postgres}


def test_without_an_answer_the_pause_lasts_its_delay() -> None:
    probes = Probes()
    slept: list[float] = []
    woke = pause_for_next_cycle(
        probes,  # type: ignore[arg-type]
        TOPO,
        waiting_for_a_primary(),
        0.5,
        sleeper(probes, slept),
    )
    assert not woke and sum(slept) == pytest.approx(0.5)


def test_with_a_primary_or_no_patroni_running_the_pause_is_a_sleep() -> None:
    with_primary = converged(DESIRED)
    stopped = waiting_for_a_primary()
    stopped = replace(
        stopped,
        services={
            k: ServiceState.STOPPED if k[1] == "patroni" else v for k, v in stopped.services.items()
        },
    )
    for observed in (with_primary, stopped):
        assert awaited_primaries(observed, TOPO) == []
        probes = Probes()
        slept: list[float] = []
        pause_for_next_cycle(probes, TOPO, observed, 0.5, sleeper(probes, slept))  # type: ignore[arg-type]
        assert slept == [0.5] and probes.asked == []


def report(observed: Observed, done: bool) -> CycleReport:
    decision = "converged" if done else "waiting: PatroniConverged no primary yet"
    phase = "Converged" if done else "Progressing"
    return CycleReport(Plan((), decision), observed, decision, phase, done, None, False, {})


def test_apply_starts_its_next_cycle_as_soon_as_the_primary_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The real apply loop: a cycle that saw no primary, a primary answering at the first
    poll, then a converged cycle. Before: a fixed BUSY_SECONDS pause in between."""
    probes = Probes(primary_url=TOPO.rest_api_url(TOPO.postgres[0]), primary_at=1)
    reports = iter([report(waiting_for_a_primary(), False), report(converged(DESIRED), True)])
    metrics = SimpleNamespace(cycles=0, record_cycle=lambda *a: None, set_role=lambda r: None)
    ctl = SimpleNamespace(
        cycle=lambda act=True: next(reports),
        metrics=metrics,
        role=SimpleNamespace(value="leader"),
        cluster=DESIRED.cluster,
        clients=probes,
        topology=TOPO,
    )
    slept: list[float] = []
    monkeypatch.setattr(loops.time, "sleep", sleeper(probes, slept))
    final = loops.apply_until_converged(ctl, 60, on_cycle=lambda r: None)  # type: ignore[arg-type]
    assert final.converged
    assert slept == [PRIMARY_POLL_SECONDS]  # woken by the answer, not after BUSY_SECONDS
    assert PRIMARY_POLL_SECONDS < loops.BUSY_SECONDS


@dataclass
class SlowNode:
    """A node still starting: takes the connection, answers late (never as primary)."""

    seconds: float

    def is_primary(self) -> bool:
        time.sleep(self.seconds)
        return False


@dataclass
class SlowProbes:
    seconds: float

    def patroni(self, api_url: str, auth: Any = None, timeout: float | None = None) -> SlowNode:
        return SlowNode(self.seconds)


def test_slow_nodes_never_hold_the_pause_past_its_delay() -> None:
    """Three nodes answering 0.15 s late each: asked together, and the pause still ends
    after its 0.3 s (one probe past it at most), not after 5 polls x 3 nodes x 0.15 s."""
    began = time.monotonic()
    woke = pause_for_next_cycle(SlowProbes(0.15), TOPO, waiting_for_a_primary(), 0.3)  # type: ignore[arg-type]
    took = time.monotonic() - began
    assert not woke and 0.3 <= took < 0.3 + 0.15 + 0.1
