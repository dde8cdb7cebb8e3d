"""fencing.decide(): every guard refuses on its own, and only all of them together fence."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pgha_operator.core.facts.types import MachineState
from pgha_operator.core.fence_decision import FenceView, decide

GOOD = FenceView(
    enabled=True,
    provider_can_fence=True,
    leader="node1",
    failures=3,
    failures_needed=3,
    machine=MachineState.DEAD,
    etcd_quorum=True,
    leader_key="node1",
    reachable_nodes=2,
    total_nodes=3,
    candidates=("node2",),
    seconds_since_last_fence=None,
    ttl=20,
)


def test_all_guards_hold_fences() -> None:
    d = decide(GOOD)
    assert d.fence and "fencing node1" in d.reason
    assert decide(replace(GOOD, machine=MachineState.FROZEN)).fence


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"enabled": False}, "fencing is off"),
        ({"provider_can_fence": False}, "cannot power machines off"),
        ({"failures": 2}, "2 of 3 probes"),
        ({"machine": MachineState.PATRONI_DOWN}, "Patroni is restarted instead"),
        ({"machine": MachineState.RUNNING}, "not dead or frozen"),
        ({"machine": MachineState.UNKNOWN}, "not dead or frozen"),
        ({"etcd_quorum": False}, "cannot read etcd"),
        ({"reachable_nodes": 1}, "only 1 of 3"),
        ({"leader_key": "node2"}, "no longer holds the leader key"),
        ({"leader_key": None}, "held by nobody"),
        ({"candidates": ()}, "no healthy replica"),
        ({"seconds_since_last_fence": 5.0}, "another fence happened"),
    ],
)
def test_each_guard_refuses(change: dict, words: str) -> None:
    d = decide(replace(GOOD, **change))
    assert not d.fence
    assert words in d.reason and d.reason.startswith("not fencing node1")


def test_an_operator_cut_off_from_every_node_fences_nothing() -> None:
    cut_off = replace(GOOD, reachable_nodes=0, etcd_quorum=False, leader_key=None)
    assert not decide(cut_off).fence
