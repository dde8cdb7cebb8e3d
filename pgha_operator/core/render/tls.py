"""Where each daemon finds its certificates on a machine, and the files that put them there.

One folder per daemon under `layout.tls_dir`, each file owned by the user that daemon runs
as: PostgreSQL refuses a key that others can read, and a change reaches exactly the
daemon that reads the file (it reloads or restarts, like for any other config file).

  <tls_dir>/etcd/      ca.crt  server.crt  server.key          etcd (peers and clients)
  <tls_dir>/postgres/  ca.crt  server.crt  server.key          PostgreSQL, Patroni's REST API
                       etcd-client.crt  etcd-client.key        Patroni's etcd client
  <tls_dir>/haproxy/   ca.crt                                  verifying Patroni's REST API
  <tls_dir>/pgbouncer/ ca.crt  server.crt  server.key          PgBouncer (spec.pooler): its
                                                               clients and its PostgreSQL
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from pgha_operator.core.render.context import DesiredFile, RenderContext, ServiceName
from pgha_operator.core.topology import Layout, Role

# The system users the daemons run as (Debian's packages create them).
ETCD_USER = "etcd"
HAPROXY_USER = "haproxy"

CERT_MODE = 0o644
KEY_MODE = 0o600
CA_FILE = "ca.crt"  # the name of the CA's certificate in every daemon's folder


@dataclass(frozen=True)
class DaemonTls:
    """The files of one daemon's folder (paths as seen on the machine)."""

    ca: str
    cert: str
    key: str
    client_cert: str  # Patroni's etcd client certificate (postgres folder only)
    client_key: str


def daemon_tls(layout: Layout, daemon: ServiceName | str) -> DaemonTls:
    folder = posixpath.join(layout.tls_dir, "postgres" if daemon == "patroni" else daemon)
    return DaemonTls(
        ca=f"{folder}/{CA_FILE}",
        cert=f"{folder}/server.crt",
        key=f"{folder}/server.key",
        client_cert=f"{folder}/etcd-client.crt",
        client_key=f"{folder}/etcd-client.key",
    )


def daemon_user(ctx: RenderContext, service: ServiceName) -> str | None:
    """The user a daemon runs as; None (the operator's own user) when the operator cannot
    switch users (not root), in which case it runs everything itself."""
    if ctx.service_user is None:
        return None
    users = {"etcd": ETCD_USER, "haproxy": HAPROXY_USER}
    # PgBouncer runs as the PostgreSQL service user, as Debian's own unit runs it.
    return users.get(service, ctx.service_user)


def tls_files(ctx: RenderContext, machine: str) -> list[DesiredFile]:
    """The certificates one machine needs, written before any config that names them."""
    m = ctx.topology.machine(machine)
    layout = ctx.layout(machine)
    tls = ctx.tls
    pair = tls.server(machine)
    files: list[DesiredFile] = []

    def add(service: ServiceName, path: str, content: str, mode: int) -> None:
        owner = daemon_user(ctx, service)
        files.append(DesiredFile(machine, path, content, mode, owner, service, certificate=True))

    if m.has(Role.ETCD):
        paths = daemon_tls(layout, "etcd")
        add("etcd", paths.ca, tls.ca_cert, CERT_MODE)
        add("etcd", paths.cert, pair.cert, CERT_MODE)
        add("etcd", paths.key, pair.key, KEY_MODE)
    if m.has(Role.POSTGRES):
        paths = daemon_tls(layout, "patroni")
        add("patroni", paths.ca, tls.ca_cert, CERT_MODE)
        add("patroni", paths.cert, pair.cert, CERT_MODE)
        add("patroni", paths.key, pair.key, KEY_MODE)
        add("patroni", paths.client_cert, tls.patroni_etcd.cert, CERT_MODE)
        add("patroni", paths.client_key, tls.patroni_etcd.key, KEY_MODE)
    if m.has(Role.POSTGRES) and ctx.cluster.spec.pooler.enabled:
        # Its own copy, so a renewal reloads PgBouncer (it re-reads them on SIGHUP) too.
        paths = daemon_tls(layout, "pgbouncer")
        add("pgbouncer", paths.ca, tls.ca_cert, CERT_MODE)
        add("pgbouncer", paths.cert, pair.cert, CERT_MODE)
        add("pgbouncer", paths.key, pair.key, KEY_MODE)
    if m.has(Role.LOADBALANCER):
        add("haproxy", daemon_tls(layout, "haproxy").ca, tls.ca_cert, CERT_MODE)
    return files
