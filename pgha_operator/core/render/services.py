"""Which daemons a machine runs, and how its service manager learns about them.

The ServiceDefinition is the one source of truth: the local supervisor reads it as JSON,
systemd gets a unit file rendered from it (templates/<service>.service.j2).
"""

from __future__ import annotations

import posixpath
import re

from pgha_operator.core.render.context import (
    Binaries,
    DesiredFile,
    RenderContext,
    ServiceName,
    render_template,
)
from pgha_operator.core.render.keepalived import has_vip, keepalived_definition
from pgha_operator.core.render.pgbouncer import pooler_fd_limit
from pgha_operator.core.render.tls import daemon_user
from pgha_operator.core.services import ServiceDefinition, definition_to_json
from pgha_operator.core.topology import Role

SYSTEMD_UNIT_DIR = "/etc/systemd/system"
SERVICE_FILE_MODE = 0o644
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PATRONI_STOP_TIMEOUT = 120.0  # Patroni stops PostgreSQL (fast shutdown + checkpoint) first
ETCD_STOP_TIMEOUT = 30.0
HAPROXY_STOP_TIMEOUT = 30.0
PGBOUNCER_STOP_TIMEOUT = 30.0


def unit_prefix(cluster: str) -> str:
    """The start of every unit of one cluster: two clusters on a host never share a unit."""
    return f"pgha-{cluster}-"


def unit_name(cluster: str, service: str) -> str:
    return f"{unit_prefix(cluster)}{service}.service"


def etcd_definition(ctx: RenderContext, machine: str) -> ServiceDefinition:
    return ServiceDefinition(
        name="etcd",
        argv=(ctx.binaries.etcd, "--config-file", ctx.layout(machine).etcd_config),
        user=daemon_user(ctx, "etcd"),
        env={},
        reload_signal=None,  # etcd cannot reload its configuration: restart it
        stop_timeout=ETCD_STOP_TIMEOUT,
    )


def patroni_definition(ctx: RenderContext, machine: str) -> ServiceDefinition:
    layout = ctx.layout(machine)
    return ServiceDefinition(
        name="patroni",
        argv=(ctx.binaries.patroni, layout.patroni_config),
        user=ctx.service_user,
        env={
            "PATH": f"{ctx.binaries.pg_bin_dir}:{SYSTEM_PATH}",
            # initdb takes the locale from the environment: the same on every machine.
            "LC_ALL": "C.UTF-8",
        },
        # PostgreSQL's tools fail when they cannot read the working directory (e.g. a
        # service user started from root's home); the data directory's parent is theirs.
        cwd=posixpath.dirname(layout.pg_data.rstrip("/")),
        reload_signal="HUP",  # Patroni re-reads patroni.yml
        stop_timeout=PATRONI_STOP_TIMEOUT,
    )


def haproxy_definition(ctx: RenderContext, machine: str) -> ServiceDefinition:
    return ServiceDefinition(
        name="haproxy",
        # Master-worker in the foreground: SIGUSR2 makes the master re-exec with the new
        # configuration while the old workers finish their connections (as with -sf).
        argv=(ctx.binaries.haproxy, "-W", "-db", "-f", ctx.layout(machine).haproxy_config),
        # Started as haproxy, so the master is not root either (its ports are unprivileged);
        # it owns its config, CA file and stats socket directory.
        user=daemon_user(ctx, "haproxy"),
        env={},
        reload_signal="USR2",
        stop_timeout=HAPROXY_STOP_TIMEOUT,
    )


def pgbouncer_definition(ctx: RenderContext, machine: str) -> ServiceDefinition:
    pooler = ctx.cluster.spec.pooler
    return ServiceDefinition(
        name="pgbouncer",
        # In the foreground (no -d): the supervisor or systemd keeps it and its stderr.
        argv=(ctx.binaries.pgbouncer, ctx.layout(machine).pgbouncer_config),
        user=daemon_user(ctx, "pgbouncer"),
        # PgBouncer does not rebind on reload: the listening address in the definition makes
        # a changed spec.pooler.port a changed definition, which restarts it.
        env={"PGHA_POOLER_LISTEN": f"{ctx.topology.address(machine)}:{pooler.port}"},
        reload_signal="HUP",  # re-reads pgbouncer.ini, the auth file and the TLS files
        stop_timeout=PGBOUNCER_STOP_TIMEOUT,
    )


def service_definitions(ctx: RenderContext, machine: str) -> tuple[ServiceDefinition, ...]:
    """The daemons of one machine, in start order (the DCS before Patroni, HAProxy last)."""
    m = ctx.topology.machine(machine)
    defs: list[ServiceDefinition] = []
    if m.has(Role.ETCD):
        defs.append(etcd_definition(ctx, machine))
    if m.has(Role.POSTGRES):
        defs.append(patroni_definition(ctx, machine))
        if ctx.cluster.spec.pooler.enabled:
            defs.append(pgbouncer_definition(ctx, machine))
    if m.has(Role.LOADBALANCER):
        defs.append(haproxy_definition(ctx, machine))
    if has_vip(ctx, machine):
        defs.append(keepalived_definition(ctx, machine))  # the VIP once HAProxy serves
    return tuple(defs)


# --- systemd --------------------------------------------------------------------------------

_PLAIN = re.compile(r"^[A-Za-z0-9_@+=:,./-]+$")


def systemd_quote(arg: str) -> str:
    """One ExecStart= word: `%` and `$` are systemd's specifier and variable syntax."""
    escaped = arg.replace("%", "%%").replace("$", "$$")
    if _PLAIN.match(arg):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_env(name: str, value: str) -> str:
    assignment = f"{name}={value}".replace("%", "%%")
    return '"' + assignment.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_argv(d: ServiceDefinition) -> tuple[str, ...]:
    if d.name == "haproxy":
        # -Ws: master-worker with sd_notify (Type=notify), as Debian's own unit runs it.
        return tuple("-Ws" if a == "-W" else a for a in d.argv if a != "-db")
    return d.argv


def runtime_directory(path: str) -> str | None:
    """A directory under /run (tmpfs: empty after a reboot) as systemd's RuntimeDirectory=."""
    for prefix in ("/run/", "/var/run/"):
        if path.startswith(prefix) and len(path) > len(prefix):
            return path.removeprefix(prefix).strip("/")
    return None


def _runtime_directory_of(ctx: RenderContext, machine: str, service: str) -> str | None:
    layout = ctx.layout(machine)
    if service == "patroni":
        return runtime_directory(layout.pg_socket_dir)
    if service == "haproxy":
        return runtime_directory(posixpath.dirname(layout.haproxy_socket))
    if service == "keepalived":
        return runtime_directory(layout.keepalived_run)
    return None


def _etcd_hardening(ctx: RenderContext, machine: str) -> dict[str, str]:
    """Where etcd may write under ProtectSystem=strict: its data dir only. Under /var/lib
    (real machines) systemd makes it at each start, owned by etcd (StateDirectory=): the
    operator removes a former member's data, and the next start finds the dir again."""
    data = ctx.layout(machine).etcd_data.rstrip("/")
    state = data.removeprefix("/var/lib/") if data.startswith("/var/lib/") else None
    return {"state_directory": state or "", "read_write_path": "" if state else data}


def systemd_unit(ctx: RenderContext, machine: str, d: ServiceDefinition) -> str:
    if d.name == "patroni" and not d.user:
        raise ValueError(
            "systemd services need a service_user for Patroni: PostgreSQL refuses to run as root"
        )
    m = ctx.topology.machine(machine)
    after = ["network-online.target"]
    if d.name == "patroni" and m.has(Role.ETCD):
        after.append(unit_name(ctx.topology.cluster, "etcd"))
    if d.name == "keepalived":
        after.append(unit_name(ctx.topology.cluster, "haproxy"))
    return render_template(
        f"{d.name}.service.j2",
        cluster=ctx.topology.cluster,
        machine=machine,
        after=" ".join(after),
        exec_start=" ".join(systemd_quote(a) for a in systemd_argv(d)),
        user=d.user,
        environment=[systemd_env(k, v) for k, v in sorted(d.env.items())],
        working_directory=d.cwd,
        runtime_directory=_runtime_directory_of(ctx, machine, d.name),
        reload_signal=d.reload_signal,
        stop_timeout=int(d.stop_timeout),
        **(_etcd_hardening(ctx, machine) if d.name == "etcd" else {}),
        **({"limit_nofile": pooler_fd_limit(ctx)} if d.name == "pgbouncer" else {}),
    )


# --- files ----------------------------------------------------------------------------------


def service_files(ctx: RenderContext, machine: str) -> tuple[DesiredFile, ...]:
    defs = service_definitions(ctx, machine)
    if ctx.service_manager == "local":
        services_dir = ctx.layout(machine).services_dir
        return tuple(
            DesiredFile(
                machine=machine,
                path=f"{services_dir}/{d.name}.json",
                content=definition_to_json(d),
                mode=SERVICE_FILE_MODE,
                owner=None,
                service=None,
                defines=d.name,
            )
            for d in defs
        )
    if ctx.service_manager == "systemd":
        return tuple(
            DesiredFile(
                machine=machine,
                path=f"{SYSTEMD_UNIT_DIR}/{unit_name(ctx.topology.cluster, d.name)}",
                content=systemd_unit(ctx, machine, d),
                mode=SERVICE_FILE_MODE,
                owner=None,
                service=None,
                defines=d.name,
            )
            for d in defs
        )
    raise ValueError(f"unknown service manager {ctx.service_manager!r}")


def validation_argv(binaries: Binaries, service: ServiceName, path: str) -> tuple[str, ...] | None:
    """The command that checks a candidate config file before it replaces the live one, or
    None when the service has no checker (etcd: parse the YAML instead)."""
    if service == "haproxy":
        return (binaries.haproxy, "-c", "-f", path)
    if service == "keepalived":
        return (binaries.keepalived, "--config-test", "--use-file", path)
    if service == "patroni" and binaries.patroni_source == "debian":
        # Debian 12's Patroni 3.0.2 has no --ignore-listen-port and its validator requires
        # every etcd host to answer, so it cannot check a candidate file beside a live node.
        return None
    if service == "patroni":
        # --ignore-listen-port: the running Patroni holds the REST and PostgreSQL ports.
        return (binaries.patroni, "--validate-config", "--ignore-listen-port", path)
    return None
