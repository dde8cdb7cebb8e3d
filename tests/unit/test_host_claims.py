"""A host the ssh provider did not make: its listening ports (ss parser), the ports and paths
a cluster claims there, and the record of which cluster, of which identity, owns it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from pgha_operator.core.facts.listeners import Listener, parse_ss_listeners
from pgha_operator.core.host_claims import paths_claimed, port_problems, ports_needed
from pgha_operator.core.spec import Cluster, load
from pgha_operator.core.topology import Machine, Role, build
from pgha_operator.shell.hosts.base import CommandResult
from pgha_operator.shell.providers.host_owner import (
    HostRefused,
    Owner,
    check_claims,
    identity_problem,
    parse_owner,
)
from pgha_operator.shell.state.errors import StateError
from pgha_operator.shell.state.identity import ensure_cluster_id, read_cluster_id

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).parents[2]


def test_ss_output_is_parsed_into_listeners() -> None:
    listeners = parse_ss_listeners((FIXTURES / "ss_listening.txt").read_text())
    assert len(listeners) == 8
    assert Listener("127.0.52.102", 2379) in listeners
    assert Listener("0.0.0.0", 2024) in listeners


def test_ss_address_forms() -> None:
    # The forms ss prints for IPv6, wildcards and scoped addresses.
    text = (
        "LISTEN 0      244            [::1]:5432          [::]:*\n"
        "LISTEN 0      4096               *:8404             *:*\n"
        "LISTEN 0      4096   127.0.0.53%lo:53        0.0.0.0:*\n"
        "LISTEN 0      128    [::ffff:10.0.0.11]:8008 [::]:*\n"
        "garbage\n"
    )
    assert parse_ss_listeners(text) == [
        Listener("::1", 5432),
        Listener("*", 8404),
        Listener("127.0.0.53", 53),
        Listener("::ffff:10.0.0.11", 8008),
    ]


def test_a_port_is_taken_on_the_same_address_or_a_wildcard_only() -> None:
    assert Listener("0.0.0.0", 5432).blocks("10.0.0.11", 5432)
    assert Listener("*", 5432).blocks("10.0.0.11", 5432)
    assert Listener("10.0.0.11", 5432).blocks("10.0.0.11", 5432)
    assert Listener("::ffff:10.0.0.11", 8008).blocks("10.0.0.11", 8008)
    # Debian's own cluster on localhost leaves 5432 free on the machine's address.
    assert not Listener("127.0.0.1", 5432).blocks("10.0.0.11", 5432)
    assert not Listener("::1", 5432).blocks("10.0.0.11", 5432)
    assert not Listener("0.0.0.0", 5433).blocks("10.0.0.11", 5432)


def ssh_cluster() -> Cluster:
    return load(REPO / "manifests/ssh.example.yaml")[0].cluster


def test_ports_and_paths_a_machine_claims() -> None:
    cluster = ssh_cluster()
    node = Machine("n1", "10.0.0.11", frozenset({Role.POSTGRES, Role.ETCD}))
    ports = dict(ports_needed(cluster, node))
    assert ports[cluster.spec.postgres.port] == "PostgreSQL"
    assert ports[cluster.spec.etcd.client_port] == "etcd clients"
    assert cluster.spec.load_balancer.ports.stats not in ports
    name = cluster.name
    assert paths_claimed(name, node) == [
        f"/etc/pgha/{name}", f"/var/lib/pgha/{name}", f"/run/pgha/{name}",
        f"/var/log/pgha/{name}", f"/etc/systemd/system/pgha-{name}-etcd.service",
        f"/etc/systemd/system/pgha-{name}-patroni.service",
    ]  # fmt: skip
    problems = port_problems(
        [Listener("0.0.0.0", cluster.spec.postgres.port), Listener("127.0.0.1", 8008)],
        "10.0.0.11",
        list(ports.items()),
    )
    assert problems == [
        f"port {cluster.spec.postgres.port} (PostgreSQL, on 10.0.0.11) is taken: something "
        f"listens on 0.0.0.0:{cluster.spec.postgres.port}"
    ]


class FakeHost:
    """Answers `ss` and the path test like a host with Debian's PostgreSQL on *:5432."""

    name = "n1"

    def __init__(self, ss: str, existing: Sequence[str]) -> None:
        self.ss, self.existing = ss, existing

    def run(self, argv: Sequence[str], **_: object) -> CommandResult:
        if argv[0] == "ss":
            return CommandResult(tuple(argv), 0, self.ss, "")
        found = [p for p in argv[4:] if p in self.existing]
        return CommandResult(tuple(argv), 0, "".join(f"{p}\n" for p in found), "")


def test_a_host_with_a_taken_port_or_path_is_refused_with_the_reasons() -> None:
    cluster = ssh_cluster()
    topo = build(cluster)
    node = topo.machine(topo.postgres[0])
    port = cluster.spec.postgres.port
    host = FakeHost(f"LISTEN 0 244 0.0.0.0:{port} 0.0.0.0:*\n", [f"/var/lib/pgha/{cluster.name}"])
    with pytest.raises(HostRefused) as refused:
        check_claims(host, cluster, node)  # type: ignore[arg-type]
    text = str(refused.value)
    assert f"port {port} (PostgreSQL" in text and f"0.0.0.0:{port}" in text
    assert f"/var/lib/pgha/{cluster.name} already exists" in text
    assert "nothing was changed" in text
    free = FakeHost(f"LISTEN 0 244 127.0.0.1:{port} 0.0.0.0:*\n", [])
    check_claims(free, cluster, node)  # type: ignore[arg-type]


def test_an_operator_of_another_identity_is_refused_the_same_one_accepted() -> None:
    owner = Owner("demo", "a" * 32, installed=("haproxy",))
    assert identity_problem("n1", owner, "a" * 32) is None  # a standby with a copied state
    problem = identity_problem("n1", owner, "b" * 32)
    assert problem is not None
    assert "belongs to cluster demo of identity " + "a" * 32 in problem
    assert "re-key" in problem
    assert identity_problem("n1", owner, None) is not None
    assert parse_owner(owner.to_json(), "n1:/x") == owner
    with pytest.raises(HostRefused, match="n1:/etc/pgha/demo/owner.json is damaged"):
        parse_owner(b'{"cluster": "demo"}', "n1:/etc/pgha/demo/owner.json")


def test_the_cluster_id_is_made_once_and_kept(tmp_path: Path) -> None:
    assert read_cluster_id(tmp_path) is None
    first = ensure_cluster_id(tmp_path)
    assert len(first) == 32 and ensure_cluster_id(tmp_path) == first
    assert (tmp_path / "cluster-id").stat().st_mode & 0o777 == 0o600
    assert ensure_cluster_id(tmp_path / "other") != first
    (tmp_path / "cluster-id").write_text("nope\n")
    with pytest.raises(StateError, match="cluster-id: is damaged"):
        read_cluster_id(tmp_path)
