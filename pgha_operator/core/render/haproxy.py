"""HAProxy configuration for a load balancer machine (templates/haproxy.cfg.j2)."""

from __future__ import annotations

from dataclasses import dataclass

from pgha_operator.core.render.context import RenderContext, format_duration, render_template
from pgha_operator.core.render.tls import daemon_tls
from pgha_operator.core.spec import duration_ms

TEMPLATE = "haproxy.cfg.j2"
# LAB-NOTES: `timeout connect 1s` with 1s checks; a TCP connect inside a LAN or a host
# never needs more, and a shorter connect timeout finds a dead server sooner.
MAX_CONNECT_MS = 1000
QUEUE_TIMEOUT = "10s"
STATS_CONNECTIONS = 100  # headroom in global maxconn for the stats page
STATS_USER = "pgha-stats"  # basic auth of the stats page; its password is Secrets.stats_password
METRICS_PATH = "/metrics"  # HAProxy's Prometheus exporter, on the stats port behind the same auth


@dataclass(frozen=True)
class Server:
    name: str
    address: str


def check_settings(ctx: RenderContext, machine: str) -> str:
    """The `default-server` line shared by both backends: check timing, and Patroni's REST
    API checked over TLS, its certificate verified against the cluster's CA."""
    t = ctx.cluster.timing
    ca = daemon_tls(ctx.layout(machine), "haproxy").ca
    return (
        f"inter {t.inter} fastinter {t.fastinter} downinter {t.downinter} "
        f"rise {t.rise} fall {t.fall} on-marked-down shutdown-sessions "
        f"check-ssl verify required ca-file {ca}"
    )


def connect_timeout(ctx: RenderContext) -> str:
    return format_duration(min(duration_ms(ctx.cluster.timing.inter), MAX_CONNECT_MS))


def haproxy_cfg(ctx: RenderContext, machine: str) -> str:
    topo = ctx.topology
    if machine not in topo.loadbalancers:
        raise ValueError(f"{machine!r} is not a load balancer of cluster {topo.cluster!r}")
    lb = ctx.cluster.spec.load_balancer
    servers = [Server(name, topo.address(name)) for name in topo.postgres]
    pooler = ctx.cluster.spec.pooler
    vip = lb.vip.address if lb.vip else None
    # Every node's pooler can take all of its clients through this port.
    pooler_conns = len(servers) * pooler.max_client_conn if pooler.enabled else 0
    return render_template(
        TEMPLATE,
        cluster=topo.cluster,
        machine=machine,
        address=topo.address(machine),
        vip=vip,
        ports=lb.ports,
        stats_user=STATS_USER,
        stats_password=ctx.secrets.stats_password,
        metrics_path=METRICS_PATH,
        # Both frontends can fill every server slot; the rest is for the stats page.
        global_maxconn=2 * len(servers) * lb.maxconn + pooler_conns + STATS_CONNECTIONS,
        pooler=pooler,
        socket=ctx.layout(machine).haproxy_socket,
        timeout_connect=connect_timeout(ctx),
        timeout_check=ctx.cluster.timing.inter,
        timeout_queue=QUEUE_TIMEOUT,
        default_server=check_settings(ctx, machine),
        servers=servers,
        server_maxconn=lb.maxconn,
        pg_port=topo.pg_port,
        rest_port=topo.rest_api_port,
    )
