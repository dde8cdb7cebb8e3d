"""Rules that span several fields of a manifest, and the creation-time fields a live
cluster keeps. Each problem or warning is (field path as written in the YAML, reason)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from pydantic.alias_generators import to_camel

from pgha_operator.core.spec.backup import backup_problems
from pgha_operator.core.spec.catalog_rules import catalog_problems
from pgha_operator.core.spec.parameters import case_duplicates
from pgha_operator.core.spec.problems import path_part
from pgha_operator.core.spec.recovery import recovery_problems
from pgha_operator.core.spec.timing import Timing, duration_ms, resolve_timing

if TYPE_CHECKING:
    from pgha_operator.core.spec.models import Cluster, ClusterSpec

Found = Iterator[tuple[str, str]]


def cluster_problems(cluster: Cluster) -> Iterable[tuple[str, str]]:
    """Rules that span fields; each problem is (field path, reason)."""
    spec = cluster.spec
    timing = resolve_timing(spec)
    yield from _odd_etcd_members(spec)
    yield from _lease_outlives_retries(spec, timing)
    yield from _machine_counts(spec)
    yield from _colocated_etcd(spec)
    yield from _port_clashes(spec)
    yield from _pooler_port_clashes(spec)
    yield from _check_intervals(timing)
    yield from _strict_needs_a_standby(spec)
    yield from _parameter_set_twice(spec)
    yield from catalog_problems(spec.postgres)
    yield from backup_problems(spec.provider.type, spec.backup)
    yield from recovery_problems(cluster.name, spec)


def _odd_etcd_members(spec: ClusterSpec) -> Found:
    members = spec.etcd.members
    if members % 2 == 0:
        yield (
            "spec.etcd.members",
            f"{members} is even: {members} members tolerate no more failures than "
            f"{members - 1} and need a bigger quorum; use an odd number",
        )


def _lease_outlives_retries(spec: ClusterSpec, timing: Timing) -> Found:
    if timing.loop_wait + 2 * timing.retry_timeout > timing.ttl:
        unset = None in (spec.patroni.ttl, spec.patroni.loop_wait, spec.patroni.retry_timeout)
        yield (
            "spec.patroni",
            f"loopWait + 2*retryTimeout must not exceed ttl "
            f"({timing.loop_wait} + 2*{timing.retry_timeout} > {timing.ttl}): otherwise the "
            "leader key can expire while Patroni is still retrying etcd"
            + (f"; unset values come from profile {spec.profile!r}" if unset else ""),
        )


def _machine_counts(spec: ClusterSpec) -> Found:
    etcd = spec.etcd
    for field_path, machines, count in (
        ("spec.etcd", etcd.machines, etcd.members),
        ("spec.postgres", spec.postgres.machines, spec.postgres.instances),
        ("spec.loadBalancer", spec.load_balancer.machines, spec.load_balancer.instances),
    ):
        if field_path == "spec.etcd" and etcd.placement == "colocated":
            continue  # reported by _colocated_etcd
        if machines is not None and len(machines) != count:
            what = "members" if field_path == "spec.etcd" else "instances"
            yield (
                f"{field_path}.machines",
                f"lists {len(machines)} machines but {what} is {count}; they must match",
            )


def _colocated_etcd(spec: ClusterSpec) -> Found:
    etcd = spec.etcd
    if etcd.placement != "colocated":
        return
    if etcd.machines is not None:
        yield (
            "spec.etcd.machines",
            "colocated etcd runs on the PostgreSQL machines; do not list machines",
        )
    if etcd.members > spec.postgres.instances:
        yield (
            "spec.etcd.members",
            f"colocated etcd needs a PostgreSQL machine per member "
            f"({etcd.members} members > {spec.postgres.instances} postgres instances)",
        )
    pg_ports = {
        spec.postgres.port: "spec.postgres.port",
        spec.patroni.rest_api_port: "spec.patroni.restApiPort",
    }
    for port, name in ((etcd.client_port, "clientPort"), (etcd.peer_port, "peerPort")):
        if port in pg_ports:
            yield (
                f"spec.etcd.{name}",
                f"port {port} clashes with {pg_ports[port]} on the colocated machines",
            )


def _port_clashes(spec: ClusterSpec) -> Found:
    etcd = spec.etcd
    if etcd.client_port == etcd.peer_port:
        yield (
            "spec.etcd.peerPort",
            f"port {etcd.peer_port} is also spec.etcd.clientPort",
        )
    if spec.postgres.port == spec.patroni.rest_api_port:
        yield (
            "spec.patroni.restApiPort",
            f"port {spec.postgres.port} is also spec.postgres.port",
        )
    ports = spec.load_balancer.ports
    seen: dict[int, str] = {}
    names = (
        ("primary", "replicas", "stats", "pooler")
        if spec.pooler.enabled
        else ("primary", "replicas", "stats")
    )
    for name in names:
        port = getattr(ports, name)
        if port in seen:
            yield (
                f"spec.loadBalancer.ports.{name}",
                f"port {port} is also the {seen[port]} port",
            )
        seen.setdefault(port, name)


def _pooler_port_clashes(spec: ClusterSpec) -> Found:
    """PgBouncer listens on each PostgreSQL node beside PostgreSQL and Patroni's REST API."""
    if not spec.pooler.enabled:
        return
    node_ports = {
        spec.postgres.port: "spec.postgres.port",
        spec.patroni.rest_api_port: "spec.patroni.restApiPort",
    }
    if spec.etcd.placement == "colocated":
        node_ports[spec.etcd.client_port] = "spec.etcd.clientPort"
        node_ports[spec.etcd.peer_port] = "spec.etcd.peerPort"
    if spec.pooler.port in node_ports:
        yield (
            "spec.pooler.port",
            f"port {spec.pooler.port} is also {node_ports[spec.pooler.port]} on the nodes",
        )


def _check_intervals(timing: Timing) -> Found:
    if duration_ms(timing.fastinter) > duration_ms(timing.inter):
        yield (
            "spec.loadBalancer.healthCheck.fastinter",
            f"{timing.fastinter} must not be longer than inter ({timing.inter})",
        )


def _strict_needs_a_standby(spec: ClusterSpec) -> Found:
    if spec.postgres.synchronous == "strict" and spec.postgres.instances < 2:
        yield (
            "spec.postgres.synchronous",
            "'strict' with a single instance blocks every write (no standby can "
            "confirm); use 'off' or add instances",
        )


def _parameter_set_twice(spec: ClusterSpec) -> Found:
    for first, second in case_duplicates(spec.postgres.parameters):
        yield (
            f"spec.postgres.parameters.{path_part(second)}",
            f"is also set as {first!r}: PostgreSQL reads setting names in any case, so "
            "both set one setting; keep one of them",
        )


def cluster_warnings(cluster: Cluster) -> list[tuple[str, str]]:
    """Accepted but worth a word: (field path, reason)."""
    spec = cluster.spec
    warnings = []
    if spec.etcd.members == 1:
        warnings.append(
            (
                "spec.etcd.members",
                "a single etcd member is a single point of failure; use 3 for production",
            )
        )
    if spec.postgres.synchronous == "on" and spec.postgres.instances < 2:
        warnings.append(
            (
                "spec.postgres.synchronous",
                "'on' with a single instance has no standby to wait for",
            )
        )
    if spec.postgres.superuser_through_load_balancer:
        warnings.append(
            (
                "spec.postgres.superuserThroughLoadBalancer",
                "the superuser (postgres) can log in through the load balancer's ports, "
                "so one leaked password controls the cluster from anywhere that reaches "
                "them; leave it false and connect as the application role",
            )
        )
    if spec.load_balancer.vip is not None and spec.load_balancer.instances < 2:
        warnings.append(
            (
                "spec.loadBalancer.vip",
                "with one load balancer the VIP has nowhere to move; set "
                "spec.loadBalancer.instances to 2 or more",
            )
        )
    if spec.patroni.source == "debian":
        warnings.append(
            (
                "spec.patroni.source",
                "Debian's patroni package (3.0.2 on Debian 12) is older than the pinned "
                "Patroni the operator is tested with; config files are not pre-validated",
            )
        )
    return warnings


# Fields a live cluster cannot change: machines were created and installed for them.
FIXED_FIELDS: tuple[tuple[str, ...], ...] = (
    ("provider", "type"),
    ("patroni", "source"),
    ("tls", "ca"),  # a new CA would need every peer to trust both for a while
)


def fixed_field_changes(accepted: Cluster, new: Cluster) -> list[tuple[str, str]]:
    """(field path, reason) for every creation-time field `new` changes against `accepted`."""
    changes = []
    for path in FIXED_FIELDS:
        old_value: Any = accepted.spec
        new_value: Any = new.spec
        for name in path:
            old_value, new_value = getattr(old_value, name), getattr(new_value, name)
        if old_value != new_value:
            yaml_path = "spec." + ".".join(to_camel(n) for n in path)
            changes.append(
                (
                    yaml_path,
                    f"is {old_value!r} on the running cluster and cannot change to "
                    f"{new_value!r}; put it back, or destroy the cluster and create it again",
                )
            )
    return changes
