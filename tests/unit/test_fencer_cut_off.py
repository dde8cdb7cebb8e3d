"""A primary cut off from the network (its machine runs, its probes fail): the fencer asks
the replicas, through the provider, whether their own network still reaches it, and fences
only when every answering replica lost it too. The reach probe's script on its own."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace

import pytest
from structlog.testing import capture_logs

from pgha_operator.core.fence_decision import failover_key_value
from pgha_operator.shell.fencer import Fencer
from pgha_operator.shell.providers import reach
from pgha_operator.shell.providers.base import PeerReach
from tests.fakeworld.machines import FakeProvider
from tests.fakeworld.world import FakeWorld
from tests.unit.test_fencer import LEADER_KEY, fencer_for, probe_until_decided
from tests.unit.test_fencer import world as world  # noqa: F401 - the fixture


class ReachProvider(FakeProvider, PeerReach):
    """The fake provider; `cut[source]` says whether `source` lost the address."""

    def __init__(self, world: FakeWorld) -> None:
        super().__init__(world)
        self.cut: dict[str, bool | None] = {}
        self.asked: list[tuple[str, str, int]] = []

    def reaches(self, source: str, address: str, port: int, timeout: float) -> bool | None:
        self.asked.append((source, address, port))
        lost = self.cut.get(source, False)
        return None if lost is None else not lost


@pytest.fixture(autouse=True)
def _logs() -> Iterator[None]:
    with capture_logs():
        yield


@pytest.fixture
def provider(world: FakeWorld) -> ReachProvider:  # noqa: F811
    p = ReachProvider(world)
    world.provider = p
    return p


def cut_off(fencer: Fencer) -> None:
    """Its machine runs on (the provider sees it RUNNING); no probe answers any more."""
    fencer._is_primary = lambda node: False  # type: ignore[method-assign]


def test_a_primary_every_replica_lost_too_is_fenced(
    world: FakeWorld,  # noqa: F811
    provider: ReachProvider,
) -> None:
    fencer = fencer_for(world)
    cut_off(fencer)
    provider.cut = {"node2": True, "node3": True}
    decision = probe_until_decided(fencer)
    assert decision.fence, decision.reason
    assert "cut off, lost by 2 replicas too (3 probes failed)" in decision.reason
    assert not world.machines["node1"].powered and LEADER_KEY not in world.etcd.keys
    assert {s for s, _, _ in provider.asked} == {"node2", "node3"}
    assert {port for _, _, port in provider.asked} == {fencer.desired.topology.pg_port}


def test_a_cut_between_the_operator_and_the_primary_alone_fences_nothing(
    world: FakeWorld,  # noqa: F811
    provider: ReachProvider,
) -> None:
    fencer = fencer_for(world)
    cut_off(fencer)
    provider.cut = {"node2": False, "node3": False}
    decision = probe_until_decided(fencer)
    assert not decision.fence and "only 0 of 2 answering replicas lost it" in decision.reason
    assert world.machines["node1"].powered and world.etcd.keys[LEADER_KEY] == "node1"


@pytest.mark.parametrize("node3", [False, None])
def test_one_replica_in_touch_or_unasked_fences_nothing(
    world: FakeWorld,  # noqa: F811
    provider: ReachProvider,
    node3: bool | None,
) -> None:
    fencer = fencer_for(world)
    cut_off(fencer)
    provider.cut = {"node2": True, "node3": node3}
    decision = probe_until_decided(fencer)
    assert not decision.fence and "only 1 of 2 answering replicas" in decision.reason
    assert world.machines["node1"].powered


def test_without_peer_probes_a_running_primary_is_left_to_the_lease(
    world: FakeWorld,  # noqa: F811
) -> None:
    fencer = fencer_for(world)  # the plain fake provider: no PeerReach
    cut_off(fencer)
    decision = probe_until_decided(fencer)
    assert not decision.fence and "cannot ask the replicas" in decision.reason
    assert world.machines["node1"].powered


def run_reach(address: str, port: int, timeout: float, *prefix: str) -> int:
    argv = reach.argv(sys.executable, address, port, timeout)
    return subprocess.run([*prefix, *argv], timeout=10).returncode


def test_the_reach_probe_counts_a_refusal_as_an_answer() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: the kernel refuses
        assert run_reach("127.0.0.1", port, 0.5) == 0
        s.listen()
        assert run_reach("127.0.0.1", port, 0.5) == 0


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root for a network namespace"
)
def test_the_reach_probe_reports_an_address_that_never_answers() -> None:
    """From a network namespace of its own (no link up: a machine cut off), as nsenter
    runs it in a machine's namespace."""
    assert run_reach("192.0.2.1", 5432, 0.2, "unshare", "--net") == 3


def test_a_synchronous_cluster_names_the_candidate_in_the_same_transaction(
    world: FakeWorld,  # noqa: F811
    provider: ReachProvider,
) -> None:
    """Patroni's election would wait 2 s for the cut-off old leader's answer: the release
    names the synchronous standby in Patroni's failover key instead."""
    fencer = fencer_for(world)
    cut_off(fencer)
    provider.cut = {"node2": True, "node3": True}
    fencer.candidates = ("node2",)
    spec = fencer.desired.cluster.spec
    postgres = spec.postgres.model_copy(update={"synchronous": "on"})
    cluster = fencer.desired.cluster.model_copy(
        update={"spec": spec.model_copy(update={"postgres": postgres})}
    )
    fencer.desired = replace(fencer.desired, cluster=cluster)
    assert probe_until_decided(fencer).fence
    assert LEADER_KEY not in world.etcd.keys
    assert json.loads(world.etcd.keys["/service/demo/failover"]) == {"member": "node2"}


def test_an_asynchronous_cluster_leaves_the_election_to_patroni(
    world: FakeWorld,  # noqa: F811
    provider: ReachProvider,
) -> None:
    fencer = fencer_for(world)
    cut_off(fencer)
    provider.cut = {"node2": True, "node3": True}
    assert probe_until_decided(fencer).fence
    assert "/service/demo/failover" not in world.etcd.keys


def test_the_failover_key_only_with_synchronous_replication() -> None:
    assert failover_key_value("off", ("node2",)) is None
    assert failover_key_value("on", ()) is None
    assert json.loads(failover_key_value("strict", ("node2", "node3")) or "") == {"member": "node2"}
