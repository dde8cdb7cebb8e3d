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
        ({"unhealthy_since_fence": 5.0}, "not been healthy since this operator's last fence"),
    ],
)
def test_each_guard_refuses(change: dict, words: str) -> None:
    d = decide(replace(GOOD, **change))
    assert not d.fence
    assert words in d.reason and d.reason.startswith("not fencing node1")


def test_an_operator_cut_off_from_every_node_fences_nothing() -> None:
    cut_off = replace(GOOD, reachable_nodes=0, etcd_quorum=False, leader_key=None)
    assert not decide(cut_off).fence


def test_a_reported_death_needs_no_failed_probes() -> None:
    """The provider saw the machine's vital processes exit: one failed probe is enough."""
    d = decide(replace(GOOD, failures=1, death_reported=True))
    assert d.fence and "reported dead by the provider" in d.reason


def test_a_reported_death_still_needs_every_other_guard() -> None:
    reported = replace(GOOD, failures=1, death_reported=True)
    for change in (
        {"machine": MachineState.RUNNING},
        {"machine": MachineState.PATRONI_DOWN},
        {"etcd_quorum": False},
        {"reachable_nodes": 1},
        {"leader_key": "node2"},
        {"candidates": ()},
        {"unhealthy_since_fence": 3.0},
    ):
        assert not decide(replace(reported, **change)).fence, change


def test_a_second_honest_death_soon_after_a_fence_is_fenced() -> None:
    """The anti-flap guard keys on the cluster's health, not on time: once a primary
    answered after the last fence (unhealthy_since_fence None), a death 3 s later fences."""
    assert decide(replace(GOOD, unhealthy_since_fence=None)).fence
    refused = decide(replace(GOOD, unhealthy_since_fence=19.6))
    assert not refused.fence and "19.6 s ago" in refused.reason and "ttl" not in refused.reason
