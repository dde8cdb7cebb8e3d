"""Parsers fed with outputs captured from a real etcd 3.4 / Patroni 4.1.5 / HAProxy 2.6 lab
(see tests/unit/fixtures/README.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pgha_operator.core.facts.etcd import (
    parse_health,
    parse_member,
    parse_member_list,
    parse_status,
)
from pgha_operator.core.facts.haproxy import csv_url, parse_stats_csv
from pgha_operator.core.facts.patroni import (
    api_base,
    named_primaries,
    normalize_role,
    parse_cluster,
    parse_config,
    parse_patroni,
    streaming_replicas,
    with_streaming,
)
from pgha_operator.core.facts.types import (
    EtcdFacts,
    FrozenDict,
    HaproxyFacts,
    HaproxyServer,
    PatroniFacts,
    thaw,
)
from pgha_operator.drill.watch import node_views

FIXTURES = Path(__file__).parent / "fixtures"
E1, E2, E3, E4 = (
    "6007055107300568629",
    "16105041299391225043",
    "16585301830596876640",
    "8366342711792046728",
)


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def text(name: str) -> str:
    return (FIXTURES / name).read_text()


# --------------------------------------------------------------------------- etcd


def test_member_list_three_voters() -> None:
    members = parse_member_list(load("etcd_member_list.json"))
    assert [m.name for m in members] == ["e1", "e2", "e3"]
    e1 = members[0]
    assert e1.id == E1  # decimal string, as the gateway sends it (etcdctl: 535d58cb18d8ae35)
    assert int(e1.id) == 0x535D58CB18D8AE35
    assert e1.peer_urls == ("http://127.0.9.1:2380",)
    assert e1.client_urls == ("http://127.0.9.1:2379",)
    assert not any(m.is_learner for m in members)
    assert all(m.started for m in members)


def test_member_list_unstarted_learner_has_no_name_nor_client_urls() -> None:
    members = parse_member_list(load("etcd_member_list_learner_unstarted.json"))
    # etcd lists members by id, so the new one is not last.
    assert [m.id for m in members] == [E1, E4, E2, E3]
    new = members[1]
    assert new.name == "" and not new.started
    assert new.client_urls == ()
    assert new.peer_urls == ("http://127.0.9.4:2380",)
    assert new.is_learner
    facts = EtcdFacts(reachable=True, members=members)
    assert facts.member_by_peer_url("http://127.0.9.4:2380") == new
    assert [m.name for m in facts.voters] == ["e1", "e2", "e3"]
    assert facts.learners == (new,)


def test_member_list_started_learner_then_promoted() -> None:
    started = parse_member_list(load("etcd_member_list_learner_started.json"))
    e4 = next(m for m in started if m.id == E4)
    assert (e4.name, e4.client_urls, e4.is_learner) == ("e4", ("http://127.0.9.4:2379",), True)
    promoted = parse_member_list(load("etcd_member_list_promoted.json"))
    assert not next(m for m in promoted if m.id == E4).is_learner
    # The promote answer carries the member list too.
    assert parse_member_list(load("etcd_member_promote.json")) == promoted


def test_member_add_answer() -> None:
    data = load("etcd_member_add_learner.json")
    new = parse_member(data["member"])
    assert new.id == E4 and new.is_learner and new.name == ""
    assert len(parse_member_list(data)) == 4


def test_member_remove_answer_lists_the_rest() -> None:
    names = [m.name for m in parse_member_list(load("etcd_member_remove.json"))]
    assert names == ["e1", "e2", "e3"]


def test_member_list_unchanged_when_members_down() -> None:
    # Stopped members stay listed; only /health tells them apart.
    healthy = parse_member_list(load("etcd_member_list.json"))
    assert parse_member_list(load("etcd_member_list_one_down.json")) == healthy
    assert parse_member_list(load("etcd_member_list_no_quorum.json")) == healthy


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("etcd_health_e1.json", True),
        ("etcd_health_one_down_e2.json", True),
        ("etcd_health_learner.json", True),  # a learner reports healthy
    ],
)
def test_health(name: str, expected: bool) -> None:
    assert parse_health(load(name)) is expected


def test_health_without_quorum_is_false_with_503() -> None:
    data = load("etcd_health_no_quorum.json")
    assert data["status_code"] == 503
    assert parse_health(data["body"]) is False
    assert parse_health({}) is False


def test_status_leader_and_learner() -> None:
    st = parse_status(load("etcd_status_e1.json"))
    assert (st.member_id, st.leader_id, st.is_learner) == (E1, E2, False)
    assert st.version == "3.4.23" and st.raft_term == 2 and st.errors == ()
    learner = parse_status(load("etcd_status_learner.json"))
    assert learner.is_learner and learner.member_id == E4 and learner.leader_id == E2


def test_status_without_quorum_has_no_leader() -> None:
    st = parse_status(load("etcd_status_no_quorum.json"))
    assert st.leader_id is None
    assert st.errors == ("etcdserver: no leader",)


def test_etcd_facts_helpers() -> None:
    members = parse_member_list(load("etcd_member_list_learner_started.json"))
    facts = EtcdFacts(reachable=True, members=members, healthy={"e1", "e2"}, leader_id=E2)
    assert facts.healthy == frozenset({"e1", "e2"})
    assert facts.member("e3") is not None and facts.member("e9") is None
    assert facts.leader is not None and facts.leader.name == "e2"
    assert [m.name for m in facts.voters] == ["e1", "e2", "e3"]
    assert hash(facts)  # frozen and hashable


def test_error_answers_have_messages() -> None:
    promote = load("etcd_promote_unstarted_error.json")
    assert promote["status_code"] == 412
    assert "in sync with leader" in promote["body"]["message"]
    second = load("etcd_add_second_learner_error.json")
    assert second["body"]["message"] == "etcdserver: too many learner members in cluster"


# --------------------------------------------------------------------------- Patroni


def test_cluster_healthy() -> None:
    pg1, pg2 = parse_cluster(load("patroni_cluster.json"))
    assert (pg1.name, pg1.role, pg1.state, pg1.timeline) == ("pg1", "primary", "running", 1)
    assert (pg1.host, pg1.port, pg1.api_url) == ("127.0.9.11", 5432, "http://127.0.9.11:8008")
    assert pg1.lag_bytes is None  # the leader has no lag fields
    assert (pg2.role, pg2.state, pg2.lag_bytes, pg2.pending_restart) == (
        "replica",
        "streaming",
        0,
        False,
    )
    facts = PatroniFacts(reachable=True, members=(pg1, pg2), primaries={"pg1"})
    assert facts.leader == pg1 and facts.replicas == (pg2,)
    assert facts.member("pg2") == pg2


def test_cluster_pending_restart() -> None:
    members = parse_cluster(load("patroni_cluster_pending_restart.json"))
    assert [m.pending_restart for m in members] == [True, True]


def test_cluster_sync_standby_role_kept() -> None:
    pg1, pg2 = parse_cluster(load("patroni_cluster_sync.json"))
    assert (pg1.role, pg2.role, pg2.state) == ("primary", "sync_standby", "streaming")


def test_cluster_lag_is_bytes_behind_the_dcs_lsn() -> None:
    _, pg2 = parse_cluster(load("patroni_cluster_replay_paused.json"))
    raw = load("patroni_cluster_replay_paused.json")["members"][1]
    assert raw["replay_lag"] == 8170752  # replay paused: replay is 8 MB behind ...
    assert pg2.lag_bytes == 0  # ... but "lag" follows the received LSN


def test_cluster_stopped_replica() -> None:
    pg1, pg2 = parse_cluster(load("patroni_cluster_replica_stopped.json"))
    assert pg1.role == "primary"
    assert (pg2.role, pg2.state, pg2.timeline, pg2.lag_bytes) == ("replica", "stopped", None, None)


def test_cluster_stopped_replica_expires_then_returns() -> None:
    assert [m.name for m in parse_cluster(load("patroni_cluster_replica_expired.json"))] == ["pg1"]
    _, pg2 = parse_cluster(load("patroni_cluster_replica_started.json"))
    assert (pg2.state, pg2.lag_bytes) == ("streaming", 0)


def test_cluster_switchover() -> None:
    pg1, pg2 = parse_cluster(load("patroni_cluster_switchover_in_progress.json"))
    assert (pg1.role, pg1.state, pg1.timeline) == ("replica", "stopped", None)
    assert (pg2.role, pg2.timeline) == ("primary", 2)
    pg1, pg2 = parse_cluster(load("patroni_cluster_after_switchover.json"))
    assert (pg1.role, pg1.state, pg1.timeline) == ("sync_standby", "streaming", 2)
    assert pg2.role == "primary"


def test_cluster_stale_without_dcs_but_node_says_replica() -> None:
    # etcd lost quorum; pg2 demoted itself, yet /cluster still calls it the leader.
    _, pg2 = parse_cluster(load("patroni_cluster_no_dcs_demoted_stale.json"))
    assert pg2.role == "primary"
    node = parse_patroni(load("patroni_patroni_no_dcs_demoted.json"))
    assert (node.name, node.role, node.timeline) == ("pg2", "replica", 2)


def test_patroni_endpoint() -> None:
    leader = parse_patroni(load("patroni_patroni_leader.json"))
    assert (leader.name, leader.role, leader.state, leader.timeline) == (
        "pg1",
        "primary",
        "running",
        1,
    )
    assert leader.dcs_last_seen == 1795636781
    replica = parse_patroni(load("patroni_patroni_replica.json"))
    assert (replica.role, replica.replication_state, replica.sync_standby) == (
        "replica",
        "streaming",
        False,
    )
    assert parse_patroni(load("patroni_patroni_pending_restart.json")).pending_restart
    sync = parse_patroni(load("patroni_patroni_replica_replay_paused.json"))
    assert sync.sync_standby
    starting = parse_patroni(load("patroni_patroni_replica_starting.json"))
    assert (starting.state, starting.timeline) == ("stopped", None)


def test_primary_probe_body_is_the_patroni_status() -> None:
    data = load("patroni_primary_on_replica_503.json")
    assert data["status_code"] == 503
    assert parse_patroni(data["body"]).name == "pg2"


def test_patroni_302_replica_reads_streaming_from_the_primary() -> None:
    # Debian 12's Patroni 3.0.2 says "running" for a streaming replica and "master" on
    # /patroni; the primary's replication list (pg_stat_replication) says who streams.
    members = parse_cluster(load("patroni302_cluster.json"))
    assert [(m.name, m.role, m.state) for m in members] == [
        ("node1", "primary", "running"),
        ("node2", "replica", "running"),
    ]
    primary = load("patroni302_patroni_primary.json")
    assert parse_patroni(primary).role == "primary"
    assert streaming_replicas(primary) == {"node2"}
    assert streaming_replicas(load("patroni302_patroni_replica.json")) == frozenset()
    fixed = with_streaming(members, streaming_replicas(primary))
    assert [(m.name, m.state) for m in fixed] == [("node1", "running"), ("node2", "streaming")]
    # Not named by the primary: stays "running" (not healthy); the leader is never touched.
    assert with_streaming(members, frozenset()) == members
    assert with_streaming(members, frozenset({"node1"})) == members


def test_patroni_302_primary_is_named_through_its_rest_url() -> None:
    # 3.0.2's /patroni carries no member name: the probe knows the primary by its URL.
    assert parse_patroni(load("patroni302_patroni_primary.json")).name == ""
    members = parse_cluster(load("patroni302_cluster.json"))
    url = "http://127.0.60.11:8008"
    assert named_primaries(frozenset({url}), members) == {"node1"}
    assert named_primaries(frozenset({"node1"}), members) == {"node1"}
    assert named_primaries(frozenset({"http://10.0.0.9:8008"}), members) == {"http://10.0.0.9:8008"}


def test_patroni_41_members_unchanged_by_with_streaming() -> None:
    members = parse_cluster(load("patroni_cluster.json"))
    leader = load("patroni_patroni_leader.json")
    assert with_streaming(members, streaming_replicas(leader)) == members


def test_drill_node_views_on_patroni_302_and_41() -> None:
    views = node_views(
        {
            "node1": load("patroni302_patroni_primary.json"),
            "node2": load("patroni302_patroni_replica.json"),
            "node3": None,
        }
    )
    assert views["node1"] is not None and not views["node1"].streaming_replica
    assert views["node2"] is not None and views["node2"].streaming_replica
    assert views["node3"] is None
    # Without the primary's answer, a 3.0.2 replica cannot be called streaming.
    alone = node_views({"node2": load("patroni302_patroni_replica.json")})["node2"]
    assert alone is not None and not alone.streaming_replica
    modern = node_views({"pg2": load("patroni_patroni_replica.json")})["pg2"]
    assert modern is not None and modern.streaming_replica


def test_config_frozen() -> None:
    config = parse_config(load("patroni_config.json"))
    assert config["ttl"] == 30 and config["loop_wait"] == 10
    assert config["postgresql"]["parameters"]["max_connections"] == 100
    assert isinstance(config["postgresql"], FrozenDict)
    assert config == load("patroni_config.json")  # equal to the plain JSON
    with pytest.raises(TypeError):
        config["ttl"] = 1  # type: ignore[index]
    patched = parse_config(load("patroni_patch_config_response.json"))
    assert patched["postgresql"]["parameters"]["max_connections"] == 200
    assert parse_config(load("patroni_config_sync.json"))["synchronous_mode"] is True


def test_patroni_facts_freezes_config_and_hashes() -> None:
    facts = PatroniFacts(
        reachable=True,
        dynamic_config={"ttl": 30, "postgresql": {"pg_hba": ["local all all peer"]}},
    )
    assert isinstance(facts.dynamic_config, FrozenDict)
    assert facts.dynamic_config["postgresql"]["pg_hba"] == ("local all all peer",)
    assert thaw(facts.dynamic_config) == {
        "ttl": 30,
        "postgresql": {"pg_hba": ["local all all peer"]},
    }
    assert hash(facts) == hash(PatroniFacts(reachable=True, dynamic_config=facts.dynamic_config))
    assert PatroniFacts(reachable=False).dynamic_config == {}


@pytest.mark.parametrize(
    ("raw", "role"),
    [
        ("leader", "primary"),
        ("master", "primary"),
        ("primary", "primary"),
        ("replica", "replica"),
        ("sync_standby", "sync_standby"),
        ("quorum_standby", "quorum_standby"),
        ("standby_leader", "standby_leader"),
    ],
)
def test_normalize_role(raw: str, role: str) -> None:
    assert normalize_role(raw) == role


def test_api_base() -> None:
    assert api_base("http://127.0.9.11:8008/patroni") == "http://127.0.9.11:8008"
    assert api_base("http://127.0.9.11:8008/") == "http://127.0.9.11:8008"


def test_post_answers_are_text() -> None:
    assert text("patroni_switchover_response.txt") == '200\nSuccessfully switched over to "pg2"'
    assert text("patroni_switchover_wrong_leader.txt") == "412\nleader name does not match"
    assert text("patroni_restart_response.txt") == "restarted successfully"


# --------------------------------------------------------------------------- HAProxy


def test_stats_csv_healthy() -> None:
    servers = parse_stats_csv(text("haproxy_stats.csv"))
    assert servers == (
        HaproxyServer("primary", "pg1", "DOWN"),
        HaproxyServer("primary", "pg2", "UP"),
        HaproxyServer("replicas", "pg1", "UP"),
        HaproxyServer("replicas", "pg2", "DOWN"),
    )
    facts = HaproxyFacts(reachable=True, servers=servers)
    assert facts.up("primary") == {"pg2"} and facts.up("replicas") == {"pg1"}
    assert facts.server("primary", "pg1") == HaproxyServer("primary", "pg1", "DOWN")


def test_stats_csv_replica_down() -> None:
    status = {
        (s.backend, s.server): s.status
        for s in parse_stats_csv(text("haproxy_stats_replica_down.csv"))
    }
    assert status == {
        ("primary", "pg1"): "UP",
        ("primary", "pg2"): "DOWN",
        ("replicas", "pg1"): "DOWN",
        ("replicas", "pg2"): "DOWN",
    }


def test_stats_csv_transitions() -> None:
    going = {
        s.server: s
        for s in parse_stats_csv(text("haproxy_stats_going_down.csv"))
        if s.backend == "replicas"
    }
    assert going["pg1"].status == "UP 2/3" and going["pg1"].is_up
    coming = {
        s.server: s
        for s in parse_stats_csv(text("haproxy_stats_coming_up.csv"))
        if s.backend == "replicas"
    }
    assert coming["pg1"].status == "DOWN 1/2" and not coming["pg1"].is_up


def test_stats_csv_maint_and_no_check() -> None:
    misc = {
        s.server: s for s in parse_stats_csv(text("haproxy_stats_misc.csv")) if s.backend == "misc"
    }
    assert misc["maint"].status == "MAINT" and not misc["maint"].is_up
    assert misc["nocheck"].status == "no check" and misc["nocheck"].is_up


def test_stats_csv_rejects_other_text() -> None:
    with pytest.raises(ValueError):
        parse_stats_csv("<html>not csv</html>")
    with pytest.raises(ValueError):
        parse_stats_csv("")


def test_csv_url() -> None:
    assert csv_url("http://127.0.9.21:7000/") == "http://127.0.9.21:7000/;csv"
    assert csv_url("http://127.0.9.21:7000") == "http://127.0.9.21:7000/;csv"
    assert csv_url("http://127.0.9.21:7000/stats") == "http://127.0.9.21:7000/stats;csv"
    assert csv_url("http://127.0.9.21:7000/;csv") == "http://127.0.9.21:7000/;csv"
