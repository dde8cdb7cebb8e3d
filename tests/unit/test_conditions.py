"""Conditions and phase from one observation (pure)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pgha_operator.core.conditions import Condition, assess, phase
from pgha_operator.core.desired import Plan
from pgha_operator.core.facts.observed import Observed
from pgha_operator.core.facts.types import HaproxyFacts, HaproxyServer
from pgha_operator.core.plan import Desired
from tests.unit.test_plan import converged, demo_desired


def routed(desired: Desired, observed: Observed) -> Observed:
    """HAProxy's view that matches Patroni's: the primary UP in :5000, streaming replicas
    UP in :5001."""
    servers = []
    for m in observed.patroni.members:
        primary = m.role == "primary"
        servers.append(HaproxyServer("primary", m.name, "UP" if primary else "DOWN"))
        streaming = not primary and m.state == "streaming"
        servers.append(HaproxyServer("replicas", m.name, "UP" if streaming else "DOWN"))
    facts = HaproxyFacts(reachable=True, servers=tuple(servers))
    return replace(observed, haproxy={lb: facts for lb in desired.topology.loadbalancers})


def with_member_state(observed: Observed, name: str, state: str) -> Observed:
    members = tuple(
        replace(m, state=state) if m.name == name else m for m in observed.patroni.members
    )
    return replace(observed, patroni=replace(observed.patroni, members=members))


NOTHING = Plan((), "waiting")


def test_healthy_cluster_is_converged() -> None:
    desired = demo_desired()
    observed = routed(desired, converged(desired))
    conditions = assess(desired, observed)
    assert all(c.status for c in conditions), conditions
    assert phase(conditions, NOTHING) == "Converged"


@pytest.mark.parametrize("state", ["creating replica", "starting", "initializing new cluster"])
def test_member_on_its_way_is_progressing(state: str) -> None:
    desired = demo_desired()
    observed = with_member_state(converged(desired), "node2", state)
    observed = routed(desired, observed)
    patroni = next(c for c in assess(desired, observed) if c.type == "PatroniConverged")
    assert not patroni.status and patroni.transient
    assert f"node2 is {state}" in patroni.reason
    assert phase(assess(desired, observed), NOTHING) == "Progressing"


@pytest.mark.parametrize("state", ["stopped", "start failed", "running", "crashed"])
def test_member_that_will_not_recover_by_itself_is_degraded(state: str) -> None:
    desired = demo_desired()
    observed = routed(desired, with_member_state(converged(desired), "node2", state))
    patroni = next(c for c in assess(desired, observed) if c.type == "PatroniConverged")
    assert not patroni.status and not patroni.transient
    assert phase(assess(desired, observed), NOTHING) == "Degraded"


def test_one_lasting_fault_beside_a_transient_one_is_degraded() -> None:
    desired = demo_desired()
    observed = with_member_state(converged(desired), "node2", "starting")
    observed = routed(desired, with_member_state(observed, "node3", "stopped"))
    assert phase(assess(desired, observed), NOTHING) == "Degraded"


def test_etcd_learner_alone_is_progressing() -> None:
    desired = demo_desired()
    observed = routed(desired, converged(desired))
    members = tuple(replace(m, is_learner=m.name == "etcd3") for m in observed.etcd.members)
    observed = replace(observed, etcd=replace(observed.etcd, members=members))
    etcd = next(c for c in assess(desired, observed) if c.type == "EtcdHealthy")
    assert not etcd.status and etcd.transient and "learners: etcd3" in etcd.reason
    assert phase(assess(desired, observed), NOTHING) == "Progressing"
    unhealthy = replace(observed.etcd, healthy=observed.etcd.healthy - {"etcd3"})
    observed = replace(observed, etcd=unhealthy)
    assert phase(assess(desired, observed), NOTHING) == "Degraded"


def test_phase_rules() -> None:
    ok = Condition("A", True, "ok")
    lasting = Condition("B", False, "broken")
    passing = Condition("C", False, "starting", transient=True)
    acting = Plan((object(),), "start patroni on node1")  # type: ignore[arg-type]
    assert phase((ok,), NOTHING) == "Converged"
    assert phase((ok,), acting) == "Progressing"
    assert phase((ok, lasting), acting) == "Progressing"
    assert phase((ok, passing), NOTHING) == "Progressing"
    assert phase((ok, lasting, passing), NOTHING) == "Degraded"
    assert phase((ok,), NOTHING, error="no such binary") == "Failed"
    assert phase((ok,), Plan((), "two primaries", blocked="TwoPrimaries")) == "Failed"
