"""Spec -> machines, roles, addresses and file layout (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgha_operator.core import topology
from pgha_operator.core.spec import Cluster, load, parse_text
from pgha_operator.core.topology import Layout, Machine, Role, Topology, layout, topology_problems

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
DEMO = (MANIFESTS / "demo.yaml").read_text()


def shipped(name: str) -> Cluster:
    (loaded,) = load([MANIFESTS / f"{name}.yaml"])
    return loaded.cluster


def from_text(text: str) -> Cluster:
    clusters, problems = parse_text(text, "t.yaml")
    assert problems == []
    return clusters[0].cluster


def edit(*pairs: str) -> str:
    text = DEMO
    for old, new in zip(pairs[::2], pairs[1::2], strict=True):
        assert old in text
        text = text.replace(old, new, 1)
    return text


def addresses(topo: Topology, names: tuple[str, ...]) -> list[str]:
    return [topo.address(n) for n in names]


def test_demo_names_and_addresses() -> None:
    topo = topology.build(shipped("demo"))
    assert topo.cluster == "demo"
    assert topo.postgres == ("node1", "node2", "node3")
    assert addresses(topo, topo.postgres) == ["127.0.10.11", "127.0.10.12", "127.0.10.13"]
    assert topo.etcd == ("etcd1", "etcd2", "etcd3")
    assert addresses(topo, topo.etcd) == ["127.0.10.101", "127.0.10.102", "127.0.10.103"]
    assert topo.loadbalancers == ("haproxy",)
    assert topo.address("haproxy") == "127.0.10.201"
    assert len(topo.machines) == 7
    assert topo.machine("node2") == Machine("node2", "127.0.10.12", frozenset({Role.POSTGRES}))
    assert topo.machine("etcd1").has(Role.ETCD)
    assert not topo.machine("etcd1").has(Role.POSTGRES)
    assert topo.machine("haproxy").roles == frozenset({Role.LOADBALANCER})


def test_demo_urls_and_ports() -> None:
    topo = topology.build(shipped("demo"))
    assert topo.etcd_client_urls == (
        "https://127.0.10.101:2379",
        "https://127.0.10.102:2379",
        "https://127.0.10.103:2379",
    )
    assert topo.etcd_peer_url("etcd2") == "https://127.0.10.102:2380"
    assert topo.rest_api_url("node3") == "https://127.0.10.13:8008"
    assert (topo.pg_port, topo.rest_api_port) == (5432, 8008)


def test_unknown_machine_raises_key_error() -> None:
    topo = topology.build(shipped("demo"))
    with pytest.raises(KeyError):
        topo.machine("node9")


def test_derived_lb_address() -> None:
    text = edit(
        "    machines:\n      - {name: haproxy, address: 127.0.10.201}\n",
        "",
        "    instances: 1",
        "    instances: 2",
    )
    topo = topology.build(from_text(text))
    assert topo.loadbalancers == ("haproxy1", "haproxy2")
    assert addresses(topo, topo.loadbalancers) == ["127.0.10.201", "127.0.10.202"]


def test_colocated_puts_etcd_on_the_first_pg_machines() -> None:
    text = edit("    members: 3\n", "    members: 1\n    placement: colocated\n")
    topo = topology.build(from_text(text))
    assert topo.etcd == ("node1",)
    assert topo.machine("node1").roles == frozenset({Role.ETCD, Role.POSTGRES})
    assert topo.machine("node2").roles == frozenset({Role.POSTGRES})
    assert topo.etcd_client_urls == ("https://127.0.10.11:2379",)
    assert len(topo.machines) == 4  # node1-3 + haproxy


def test_nspawn_colocated_three() -> None:
    topo = topology.build(shipped("nspawn"))
    assert topo.etcd == topo.postgres == ("node1", "node2", "node3")
    assert addresses(topo, topo.postgres) == ["10.231.0.11", "10.231.0.12", "10.231.0.13"]
    assert topo.loadbalancers == ("haproxy1", "haproxy2")  # behind the VIP 10.231.0.250
    assert topo.address("haproxy1") == "10.231.0.201"
    assert topo.address("haproxy2") == "10.231.0.202"
    assert all(topo.machine(n).roles == {Role.ETCD, Role.POSTGRES} for n in topo.postgres)


def test_vagrant_listed_machines() -> None:
    topo = topology.build(shipped("vagrant"))
    assert topo.etcd == ("etcdnode",)
    assert topo.address("etcdnode") == "192.168.50.20"
    assert addresses(topo, topo.postgres) == ["192.168.50.11", "192.168.50.12", "192.168.50.13"]
    assert topo.address("haproxynode") == "192.168.50.30"


def test_ssh_colocated_on_listed_machines() -> None:
    topo = topology.build(shipped("ssh.example"))
    assert topo.etcd == ("pg1", "pg2", "pg3")
    assert topo.etcd_client_urls[0] == "https://10.0.0.11:2379"
    assert topo.loadbalancers == ("lb1",)


@pytest.mark.parametrize("name", ["demo", "nspawn", "ssh.example", "vagrant"])
def test_shipped_manifests_have_no_topology_problems(name: str) -> None:
    cluster = shipped(name)
    assert topology_problems(cluster) == []
    topo = topology.build(cluster)
    all_addresses = [m.address for m in topo.machines]
    assert len(set(all_addresses)) == len(all_addresses)


def test_small_network_reports_the_role_that_does_not_fit() -> None:
    text = edit("network: 127.0.10.0/24", "network: 127.0.10.0/25")
    assert parse_text(text, "t.yaml")[1] == []  # a /25 holds .11-.13 and .101-.103
    text = edit(
        "network: 127.0.10.0/24",
        "network: 127.0.10.0/25",
        "    machines:\n      - {name: haproxy, address: 127.0.10.201}\n",
        "",
    )
    (problem,) = parse_text(text, "t.yaml")[1]
    assert problem.path == "spec.provider.network"
    assert "too small to derive 1 loadbalancer addresses from 127.0.10.201" in problem.reason


def test_layout_real_machine() -> None:
    real = layout("/", "demo")
    assert isinstance(real, Layout)
    assert real.patroni_config == "/etc/pgha/demo/patroni.yml"
    assert real.pg_data == "/var/lib/pgha/demo/postgresql/data"
    assert real.etcd_data == "/var/lib/pgha/demo/etcd"
    assert real.relative(real.haproxy_config) == "etc/pgha/demo/haproxy.cfg"


def test_real_machine_layouts_never_meet_debian_or_another_cluster() -> None:
    """Nothing in a package's own paths (Debian's cluster `main` lives in
    /var/lib/postgresql/15/main, its sockets in /run/postgresql and /run/haproxy), and
    nothing shared by two clusters, even one named `main`."""
    main, other = layout("/", "main"), layout("/", "other")
    debian = ("/var/lib/postgresql", "/etc/postgresql", "/run/postgresql", "/var/run/postgresql",
              "/etc/haproxy", "/run/haproxy", "/etc/etcd", "/var/lib/etcd", "/etc/patroni")  # fmt: skip
    paths = [p for p in vars(main).values() if p != "/"]
    assert all(not p.startswith(debian) for p in paths), paths
    assert all("/pgha/main" in p for p in paths), paths
    assert not set(paths) & set(vars(other).values())


def test_layout_local_machine_directory() -> None:
    local = layout("/srv/pgha/machines/node1/", "demo")
    assert local.root == "/srv/pgha/machines/node1"
    assert local.pg_data == "/srv/pgha/machines/node1/pg/data"
    assert local.patroni_config.startswith(local.root + "/")
    assert local.relative(local.patroni_config) == "etc/patroni/patroni.yml"
