"""plan(): etcd members that are not in the manifest (issue 11: a dead extra member).

A member outside the manifest is removed once the members that stay are healthy and the
removal can commit (quorum), one per cycle; a dead one goes before any replacement is added
(etcd's own advice: remove a failed member first).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from pgha_operator.core.actions import AddEtcdMember, RemoveEtcdMember, WaitFor
from pgha_operator.core.facts.observed import Observed
from pgha_operator.core.facts.types import EtcdMember
from pgha_operator.core.plan import plan
from tests.unit.test_plan import converged
from tests.unit.test_plan_day2 import DEMO, desired_for, with_spec

FOREIGN = EtcdMember("77", "", ("http://127.0.9.250:2380",), ())  # added by hand, never started


def with_member(observed: Observed, member: EtcdMember, healthy: bool) -> Observed:
    etcd = observed.etcd
    names = etcd.healthy | {member.name} if healthy else etcd.healthy
    return replace(observed, etcd=replace(etcd, members=(*etcd.members, member), healthy=names))


def unhealthy(observed: Observed, *names: str) -> Observed:
    return replace(
        observed, etcd=replace(observed.etcd, healthy=observed.etcd.healthy - set(names))
    )


def removed(observed: Observed, desired_members: int = 3) -> list[str]:
    desired = desired_for(with_spec(etcd__members=desired_members))
    return [a.machine for a in plan(desired, observed).actions if isinstance(a, RemoveEtcdMember)]


def waits(observed: Observed, desired_members: int = 3) -> list[str]:
    desired = desired_for(with_spec(etcd__members=desired_members))
    return [a.what for a in plan(desired, observed).actions if isinstance(a, WaitFor)]


BASE = converged(desired_for(DEMO))  # etcd1-3 healthy voters


@pytest.mark.parametrize(
    ("case", "observed", "desired_members", "want_removed"),
    [
        # The bug: the dead extra member counted itself as "a voter down" and was never removed.
        ("dead foreign voter", with_member(BASE, FOREIGN, healthy=False), 3, ["77"]),
        ("dead foreign learner", with_member(BASE, replace(FOREIGN, is_learner=True), False), 3,
         ["77"]),
        ("healthy foreign voter", with_member(BASE, replace(FOREIGN, name="x"), True), 3, ["x"]),
        # 3 -> 1 with etcd2 dead: etcd2 goes first (etcd1, etcd3 healthy keep quorum).
        ("leaving member dead", unhealthy(BASE, "etcd2"), 1, ["etcd2"]),
        ("leaving healthy", BASE, 1, ["etcd2"]),
    ],
)  # fmt: skip
def test_an_extra_member_is_removed(
    case: str, observed: Observed, desired_members: int, want_removed: list[str]
) -> None:
    assert removed(observed, desired_members) == want_removed, case


@pytest.mark.parametrize(
    ("case", "observed", "desired_members", "reason"),
    [
        # A member that stays is down: removing anything now would cut the margin further.
        ("a staying voter down", with_member(unhealthy(BASE, "etcd1"), FOREIGN, False), 3,
         "while etcd1 is down"),
        ("kept member down on 3 -> 1", unhealthy(BASE, "etcd1"), 1, "while etcd1 is down"),
        # 2 voters, one dead: no quorum, etcd could not commit the removal.
        ("no quorum", replace(BASE, etcd=replace(
            BASE.etcd, members=(BASE.etcd.members[0], replace(FOREIGN, name="")),
            healthy=frozenset({"etcd1"}))), 1, "no quorum"),
    ],
)  # fmt: skip
def test_an_extra_member_is_kept_when_removing_it_is_unsafe(
    case: str, observed: Observed, desired_members: int, reason: str
) -> None:
    assert removed(observed, desired_members) == [], case
    assert any(reason in w for w in waits(observed, desired_members)), case


def test_a_dead_extra_member_goes_before_its_replacement_is_added() -> None:
    """A dead member outside the manifest and etcd3 not yet a member: remove, then add."""
    desired = desired_for(DEMO)
    members = tuple(m for m in BASE.etcd.members if m.name != "etcd3")
    observed = replace(BASE, etcd=replace(BASE.etcd, members=(*members, FOREIGN)))
    actions = plan(desired, observed).actions
    assert [a.machine for a in actions if isinstance(a, RemoveEtcdMember)] == ["77"]
    assert not any(isinstance(a, AddEtcdMember) for a in actions)
    after = replace(observed, etcd=replace(observed.etcd, members=members))
    assert [a.machine for a in plan(desired, after).actions if isinstance(a, AddEtcdMember)] == [
        "etcd3"
    ]


def test_one_removal_per_cycle() -> None:
    two = with_member(with_member(BASE, FOREIGN, False), replace(FOREIGN, id="78"), False)
    # 5 voters, 3 healthy: the first removal keeps quorum; only one is planned.
    assert removed(two) == ["77"]
