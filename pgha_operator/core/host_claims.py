"""What one cluster claims on a real machine it did not make (the ssh provider): the ports
its daemons bind and the paths it creates. A host where any of them is already taken by
something else is refused, with the reason, before anything is changed on it (pure)."""

from __future__ import annotations

from pgha_operator.core.facts.listeners import Listener
from pgha_operator.core.render.services import SYSTEMD_UNIT_DIR, unit_name
from pgha_operator.core.spec import Cluster
from pgha_operator.core.topology import Machine, Role, host_dirs

SERVICES_OF_ROLE = {Role.ETCD: "etcd", Role.POSTGRES: "patroni", Role.LOADBALANCER: "haproxy"}


def ports_needed(cluster: Cluster, machine: Machine) -> list[tuple[int, str]]:
    """(port, what binds it) for the daemons of one machine; all bind the machine's address."""
    spec = cluster.spec
    ports: list[tuple[int, str]] = []
    if machine.has(Role.ETCD):
        ports += [(spec.etcd.client_port, "etcd clients"), (spec.etcd.peer_port, "etcd peers")]
    if machine.has(Role.POSTGRES):
        ports += [(spec.postgres.port, "PostgreSQL"), (spec.patroni.rest_api_port, "Patroni")]
    if machine.has(Role.LOADBALANCER):
        lb = spec.load_balancer.ports
        ports += [(lb.primary, "HAProxy primary"), (lb.replicas, "HAProxy replicas"),
                  (lb.stats, "HAProxy stats")]  # fmt: skip
    return ports


def paths_claimed(cluster: str, machine: Machine) -> list[str]:
    """The directories and unit files the cluster creates on the machine."""
    units = [
        f"{SYSTEMD_UNIT_DIR}/{unit_name(cluster, service)}"
        for role, service in SERVICES_OF_ROLE.items()
        if machine.has(role)
    ]
    return [*host_dirs(cluster), *units]


def port_problems(
    listeners: list[Listener], address: str, needed: list[tuple[int, str]]
) -> list[str]:
    """Why a port the machine's daemons need is taken (one reason per port)."""
    problems = []
    for port, what in needed:
        taken = [str(li) for li in listeners if li.blocks(address, port)]
        if taken:
            problems.append(
                f"port {port} ({what}, on {address}) is taken: something listens on "
                f"{', '.join(sorted(set(taken)))}"
            )
    return problems


def path_problems(existing: list[str]) -> list[str]:
    return [f"{path} already exists, and this cluster did not make it" for path in existing]
