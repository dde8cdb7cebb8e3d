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
        ({"machine": MachineState.RUNNING}, "cannot ask the replicas"),
        ({"machine": MachineState.UNKNOWN}, "not dead, frozen or running"),
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


CUT_OFF = replace(GOOD, machine=MachineState.RUNNING, replicas_lost_leader=2)


def test_a_running_primary_every_replica_lost_too_is_fenced() -> None:
    """Cut off from the network: probes failed, and both answering replicas cannot reach it."""
    d = decide(CUT_OFF)
    assert d.fence and "cut off, lost by 2 replicas too" in d.reason


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"replicas_lost_leader": None}, "cannot ask the replicas"),
        ({"replicas_lost_leader": 1}, "only 1 of 2 answering replicas lost it too"),
        ({"replicas_lost_leader": 0}, "a cut between the operator and the primary alone"),
        ({"failures": 2}, "2 of 3 probes failed"),
        ({"failures": 1, "death_reported": True}, "its machine runs; 1 of 3 probes failed"),
        ({"etcd_quorum": False}, "cannot read etcd"),
        ({"reachable_nodes": 1, "replicas_lost_leader": 1}, "only 1 of 3"),
        ({"leader_key": "node2"}, "no longer holds the leader key"),
        ({"candidates": ()}, "no healthy replica"),
        ({"unhealthy_since_fence": 2.0}, "not been healthy since"),
        ({"enabled": False}, "fencing is off"),
        ({"provider_can_fence": False}, "cannot power machines off"),
    ],
)
def test_a_cut_off_primary_needs_its_replicas_and_every_other_guard(
    change: dict, words: str
) -> None:
    d = decide(replace(CUT_OFF, **change))
    assert not d.fence
    assert words in d.reason and d.reason.startswith("not fencing node1")


def test_a_cut_off_primary_of_five_needs_every_answering_replica() -> None:
    """5 nodes, 3 replicas answer: all 3 must have lost the leader, 2 of them are not enough."""
    five = replace(CUT_OFF, total_nodes=5, reachable_nodes=3, replicas_lost_leader=3)
    assert decide(five).fence
    assert not decide(replace(five, replicas_lost_leader=2)).fence
