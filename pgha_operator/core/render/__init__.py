"""Pure rendering: desired config files and service definitions from spec + topology.

No I/O besides reading templates/. Never imports hosts/, providers/, components/ or
execute: the controller writes, validates and reloads what this returns.

Per machine, by role:
  etcd member     layout.etcd_config      (YAML for `etcd --config-file`)
  postgres node   layout.patroni_config   (patroni.yml, 0600, owned by the service user)
  load balancer   layout.haproxy_config   (haproxy.cfg)
  postgres node, spec.pooler enabled: layout.pgbouncer_config (+ its auth file, 0600)
  load balancer, spec.loadBalancer.vip: layout.keepalived_config (+ its check script)
and the service definitions: JSON under layout.services_dir for the local supervisor, or
/etc/systemd/system/pgha-<service>.service units.
"""

from __future__ import annotations

from pgha_operator.core.render.context import (
    ADMIN_USER,
    APP_DATABASE,
    APP_USER,
    POOLER_USER,
    REPLICATION_USER,
    REST_USER,
    SUPERUSER,
    TEMPLATES_DIR,
    Binaries,
    DesiredFile,
    RenderContext,
    Secrets,
    ServiceName,
)
from pgha_operator.core.render.etcd import etcd_config, etcd_yaml
from pgha_operator.core.render.haproxy import haproxy_cfg
from pgha_operator.core.render.keepalived import has_vip, keepalived_files
from pgha_operator.core.render.patroni import dynamic_config, patroni_config, patroni_yaml, pg_hba
from pgha_operator.core.render.pgbackrest import backup_files
from pgha_operator.core.render.pgbouncer import pgbouncer_ini, pgbouncer_userlist
from pgha_operator.core.render.restore import restore_files
from pgha_operator.core.render.services import (
    SYSTEMD_UNIT_DIR,
    service_definitions,
    service_files,
    unit_name,
    validation_argv,
)
from pgha_operator.core.render.tls import (
    ETCD_USER,
    HAPROXY_USER,
    daemon_tls,
    daemon_user,
    tls_files,
)
from pgha_operator.core.topology import Role

__all__ = [
    "ADMIN_USER",
    "APP_DATABASE",
    "APP_USER",
    "ETCD_USER",
    "HAPROXY_USER",
    "POOLER_USER",
    "REPLICATION_USER",
    "REST_USER",
    "SUPERUSER",
    "SYSTEMD_UNIT_DIR",
    "TEMPLATES_DIR",
    "Binaries",
    "DesiredFile",
    "RenderContext",
    "Secrets",
    "ServiceName",
    "daemon_tls",
    "dynamic_config",
    "etcd_config",
    "haproxy_cfg",
    "patroni_config",
    "pg_hba",
    "render_all",
    "render_machine",
    "service_definitions",
    "unit_name",
    "validation_argv",
]

PATRONI_CONFIG_MODE = 0o600  # holds the database and REST API passwords
CONFIG_MODE = 0o644
HAPROXY_CONFIG_MODE = 0o600  # holds the stats page's password


def render_machine(ctx: RenderContext, machine: str) -> tuple[DesiredFile, ...]:
    """Every file one machine needs: certificates first, then configs (etcd, Patroni,
    HAProxy), then the service definitions in start order."""
    m = ctx.topology.machine(machine)
    layout = ctx.layout(machine)
    files: list[DesiredFile] = tls_files(ctx, machine)
    if m.has(Role.ETCD):
        files.append(
            DesiredFile(
                machine=machine,
                path=layout.etcd_config,
                content=etcd_yaml(ctx, machine),
                mode=CONFIG_MODE,
                owner=None,
                service="etcd",
            )
        )
    if m.has(Role.POSTGRES):
        files.append(
            DesiredFile(
                machine=machine,
                path=layout.patroni_config,
                content=patroni_yaml(ctx, machine),
                mode=PATRONI_CONFIG_MODE,
                owner=ctx.service_user,
                service="patroni",
            )
        )
        files.extend(backup_files(ctx, machine))
        files.extend(restore_files(ctx, machine))
    if m.has(Role.POSTGRES) and ctx.cluster.spec.pooler.enabled:
        files += pgbouncer_files(ctx, machine)
    if m.has(Role.LOADBALANCER):
        files.append(
            DesiredFile(
                machine=machine,
                path=layout.haproxy_config,
                content=haproxy_cfg(ctx, machine),
                # Holds the stats page's password; HAProxy (as haproxy) rereads it on reload.
                mode=HAPROXY_CONFIG_MODE,
                owner=daemon_user(ctx, "haproxy"),
                service="haproxy",
            )
        )
    if has_vip(ctx, machine):
        files += keepalived_files(ctx, machine)
    files.extend(service_files(ctx, machine))
    return tuple(files)


def pgbouncer_files(ctx: RenderContext, machine: str) -> list[DesiredFile]:
    """The auth file (holds the pooler role's password) before the config that names it;
    both read by PgBouncer, which re-reads them on reload."""
    layout = ctx.layout(machine)
    owner = daemon_user(ctx, "pgbouncer")
    return [
        DesiredFile(
            machine, layout.pgbouncer_userlist, pgbouncer_userlist(ctx), 0o600, owner, "pgbouncer"
        ),
        DesiredFile(
            machine,
            layout.pgbouncer_config,
            pgbouncer_ini(ctx, machine),
            CONFIG_MODE,
            owner,
            "pgbouncer",
        ),
    ]


def render_all(ctx: RenderContext) -> tuple[DesiredFile, ...]:
    """Every machine's files, in topology order; the same context always gives the same tuple."""
    return tuple(f for m in ctx.topology.machines for f in render_machine(ctx, m.name))
