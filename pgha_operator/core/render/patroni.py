"""Patroni's local configuration (patroni.yml) and its dynamic (DCS) configuration."""

from __future__ import annotations

from typing import Any

from pgha_operator.core.render.context import (
    REPLICATION_USER,
    REST_USER,
    SUPERUSER,
    RenderContext,
    dump_yaml,
)
from pgha_operator.core.render.pgbackrest import (
    archive_parameters,
    recovery_settings,
    replica_creation,
)
from pgha_operator.core.render.restore import bootstrap_section, local_connection
from pgha_operator.core.render.tls import daemon_tls
from pgha_operator.core.spec import HbaRule, ParameterValue

# PostgreSQL settings every node gets unless the manifest overrides them.
HA_PARAMETERS: dict[str, ParameterValue] = {
    "wal_level": "replica",
    "hot_standby": "on",
    "wal_log_hints": "on",  # pg_rewind needs it (data checksums would do as well)
    "max_wal_senders": 10,
    "max_replication_slots": 10,
    "wal_keep_size": "128MB",
    "password_encryption": "scram-sha-256",
}

AUTH_METHOD = "scram-sha-256"


def _pg_value(value: ParameterValue) -> str | int | float:
    # PostgreSQL's own spelling; Patroni would write Python's `True`.
    if isinstance(value, bool):
        return "on" if value else "off"
    return value


def postgres_parameters(ctx: RenderContext) -> dict[str, str | int | float]:
    merged = {**HA_PARAMETERS, **ctx.cluster.spec.postgres.parameters}
    return {name: _pg_value(value) for name, value in merged.items()}


def dynamic_config(ctx: RenderContext) -> dict[str, Any]:
    """What Patroni keeps in the DCS (`bootstrap.dcs` at bootstrap; `PATCH /config` after)."""
    spec = ctx.cluster.spec
    timing = ctx.cluster.timing
    sync = spec.postgres.synchronous
    return {
        "ttl": timing.ttl,
        "loop_wait": timing.loop_wait,
        "retry_timeout": timing.retry_timeout,
        "maximum_lag_on_failover": spec.patroni.maximum_lag_on_failover,
        "synchronous_mode": sync in ("on", "strict"),
        "synchronous_mode_strict": sync == "strict",
        "failsafe_mode": False,
        "postgresql": {
            "use_pg_rewind": True,
            "use_slots": True,
            "parameters": postgres_parameters(ctx),
        },
    }


def ssl_parameters(ctx: RenderContext, machine: str) -> dict[str, str]:
    """TLS with the node's own certificate. Local (patroni.yml), not in the DCS: the paths
    are the machine's (several local machines share a host, each under its own root)."""
    paths = daemon_tls(ctx.layout(machine), "patroni")
    return {
        "ssl": "on",
        "ssl_cert_file": paths.cert,
        "ssl_key_file": paths.key,
        "ssl_ca_file": paths.ca,
    }


def client_tls(ctx: RenderContext, machine: str) -> dict[str, str]:
    """What Patroni's own connections (local superuser, replication, pg_rewind) add: TLS,
    and a server whose certificate the cluster's CA signed for the address dialled."""
    return {"sslmode": "verify-full", "sslrootcert": daemon_tls(ctx.layout(machine), "patroni").ca}


def hba_line(rule: HbaRule) -> str:
    parts = [rule.type, rule.database, rule.user]
    if rule.address is not None:
        parts.append(str(rule.address))
    parts.append(rule.method)
    return " ".join(parts)


def pg_hba(ctx: RenderContext) -> list[str]:
    """The whole pg_hba.conf (first match wins). First the load balancers' superuser and
    replication logins are refused (unless the manifest opts in): clients use the app role,
    the operator does its superuser work on each node directly. Then the manifest's rules
    (so a `reject` works), then the cluster's own connections: over TLS only (`hostssl`),
    scram-sha-256 everywhere, never trust."""
    topo = ctx.topology
    balancers = [topo.address(name) for name in topo.loadbalancers]
    lines: list[str] = []
    if not ctx.cluster.spec.postgres.superuser_through_load_balancer:
        # `host` matches with and without TLS. HAProxy connects from its own address
        # (`source` in haproxy.cfg), so on one host it is not the nodes' 127.0.0.1.
        lines += [f"host all {SUPERUSER},{REPLICATION_USER} {lb}/32 reject" for lb in balancers]
    lines += [hba_line(rule) for rule in ctx.cluster.spec.postgres.hba]
    lines.append(f"local all all {AUTH_METHOD}")
    # Outgoing loopback connections come from 127.0.0.1 whatever address a node listens on.
    # Nodes replicate from each other; load balancers only forward clients (no replication).
    nodes = ["127.0.0.1", *(topo.address(name) for name in topo.postgres)]
    for source in dict.fromkeys(nodes + balancers):
        lines.append(f"hostssl all all {source}/32 {AUTH_METHOD}")
        if source in nodes:
            lines.append(f"hostssl replication {REPLICATION_USER} {source}/32 {AUTH_METHOD}")
    return lines


def patroni_config(ctx: RenderContext, machine: str) -> dict[str, Any]:
    topo = ctx.topology
    if machine not in topo.postgres:
        raise ValueError(f"{machine!r} is not a PostgreSQL node of cluster {topo.cluster!r}")
    address = topo.address(machine)
    return {
        "scope": topo.cluster,
        "namespace": ctx.cluster.spec.patroni.namespace,
        "name": machine,
        # No log.dir: Patroni logs to stderr and the supervisor / journald captures it.
        "log": {"level": "INFO"},
        "restapi": _restapi_section(ctx, machine, address),
        "etcd3": _etcd3_section(ctx, machine),
        "bootstrap": {
            "dcs": dynamic_config(ctx),
            "initdb": [{"encoding": "UTF8"}, "data-checksums"],
            # No pg_hba here: bootstrap.pg_hba is appended to initdb's file, which trusts
            # 127.0.0.1. postgresql.pg_hba below replaces the file instead.
            **bootstrap_section(ctx, machine),  # spec.bootstrap.recovery: a restore
        },
        "postgresql": _postgresql_section(ctx, machine, address),
        "watchdog": {"mode": "off"},
        "ctl": _ctl_section(ctx, machine),
        "tags": {
            "nofailover": False,
            "noloadbalance": False,
            "clonefrom": False,
            "nosync": False,
        },
    }


def _etcd3_section(ctx: RenderContext, machine: str) -> dict[str, Any]:
    """etcd over TLS with Patroni's own client certificate (etcd requires one)."""
    topo = ctx.topology
    tls = daemon_tls(ctx.layout(machine), "patroni")
    return {
        "hosts": [f"{topo.address(name)}:{topo.etcd_client_port}" for name in topo.etcd],
        "protocol": "https",
        "cacert": tls.ca,
        "cert": tls.client_cert,
        "key": tls.client_key,
    }


def _rest_auth(ctx: RenderContext) -> dict[str, str]:
    return {"username": REST_USER, "password": ctx.secrets.rest_password}


def _restapi_section(ctx: RenderContext, machine: str, address: str) -> dict[str, Any]:
    rest = f"{address}:{ctx.topology.rest_api_port}"
    tls = daemon_tls(ctx.layout(machine), "patroni")
    return {
        "listen": rest,
        "connect_address": rest,
        # https only, with the node's certificate (its SANs hold the node's address, which
        # HAProxy's checks and the operator verify). No client certificates: HAProxy's
        # health checks present none.
        "certfile": tls.cert,
        "keyfile": tls.key,
        "cafile": tls.ca,
        # With authentication set, Patroni asks for it on unsafe endpoints only
        # (POST/PUT/PATCH/DELETE); HAProxy's GET /primary and /replica stay open.
        "authentication": _rest_auth(ctx),
    }


def _ctl_section(ctx: RenderContext, machine: str) -> dict[str, Any]:
    """patronictl on a node (`patronictl -c patroni.yml list`, `switchover`...): verify every
    node's REST certificate against the cluster's CA and log in for the unsafe calls."""
    return {
        "insecure": False,
        "cacert": daemon_tls(ctx.layout(machine), "patroni").ca,
        "authentication": _rest_auth(ctx),
    }


def _postgresql_section(ctx: RenderContext, machine: str, address: str) -> dict[str, Any]:
    layout = ctx.layout(machine)
    secrets = ctx.secrets
    pg = f"{address}:{ctx.topology.pg_port}"
    tls = client_tls(ctx, machine)
    superuser = {"username": SUPERUSER, "password": secrets.superuser_password, **tls}
    section: dict[str, Any] = {
        "listen": pg,
        "connect_address": pg,
        "data_dir": layout.pg_data,
        "bin_dir": ctx.binaries.pg_bin_dir,
        "pgpass": layout.pgpass,
        # Patroni's local superuser connection goes over TCP to `listen` (an address the
        # node's certificate names), so verify-full holds there too.
        "authentication": {
            "superuser": dict(superuser),
            "replication": {
                "username": REPLICATION_USER,
                "password": secrets.replication_password,
                **tls,
            },
            "rewind": dict(superuser),
        },
        "parameters": {
            # Each node its own socket directory: nodes sharing a host and a port would
            # otherwise collide on Debian's shared /var/run/postgresql.
            "unix_socket_directories": layout.pg_socket_dir,
            **ssl_parameters(ctx, machine),
            # WAL archiving (spec.backup): local, since the config path is the machine's.
            **archive_parameters(ctx, machine),
        },
        "pg_hba": pg_hba(ctx),
        # pg_basebackup's default spread checkpoint paces itself over checkpoint_timeout:
        # a replica made while the primary has dirty buffers (a CREATE DATABASE just ran)
        # waited 90 s for it. A fast one costs a short burst of writes.
        "basebackup": [{"checkpoint": "fast"}],
        **local_connection(ctx),  # a restored cluster: over the socket (render/restore.py)
        # With spec.backup: restore from the repository first, pg_basebackup after.
        **replica_creation(ctx, machine),
    }
    if recovery := recovery_settings(ctx, machine):
        section["recovery_conf"] = recovery
    return section


def patroni_yaml(ctx: RenderContext, machine: str) -> str:
    header = (
        f"# Patroni node {machine} of cluster {ctx.topology.cluster}; written by pgha-operator.\n"
        "# bootstrap.dcs applies only when the cluster is created; the operator changes the\n"
        "# DCS settings through Patroni's PATCH /config.\n"
    )
    return header + dump_yaml(patroni_config(ctx, machine))
