"""PgBouncer on a PostgreSQL node (spec.pooler): pgbouncer.ini and its auth file.

Placement: one PgBouncer per PostgreSQL node, its only server the node's own PostgreSQL;
HAProxy's pooler port routes to the pooler of the node whose Patroni answers GET /primary,
exactly as the primary port routes to PostgreSQL. A failover therefore needs nothing from
PgBouncer: HAProxy moves new clients to the new primary's pooler and cuts the sessions of
the old one (on-marked-down shutdown-sessions). docs/pooler.md says why not on the load
balancers.

Authentication: clients log in with SCRAM; PgBouncer fetches their secret with auth_query
as POOLER_USER through `pgha_pooler.user_secret($1)`, a SECURITY DEFINER function the
operator installs in every database (auth_query runs in the database asked for). The auth
file names POOLER_USER alone (its password, which PgBouncer needs to log in itself).
"""

from __future__ import annotations

from pgha_operator.core.render.context import POOLER_USER, RenderContext, render_template
from pgha_operator.core.render.tls import daemon_tls

TEMPLATE = "pgbouncer.ini.j2"
# The lookup function's schema and name (installed by shell/clients/postgres.py).
AUTH_SCHEMA = "pgha_pooler"
AUTH_QUERY = f"SELECT usename, passwd FROM {AUTH_SCHEMA}.user_secret($1)"
# Room for the operator's SHOW POOLS and the auth_query pool beside the clients.
ADMIN_CONNECTIONS = 10


def pgbouncer_ini(ctx: RenderContext, machine: str) -> str:
    topo = ctx.topology
    if machine not in topo.postgres:
        raise ValueError(f"{machine!r} is not a PostgreSQL node of cluster {topo.cluster!r}")
    pooler = ctx.cluster.spec.pooler
    layout = ctx.layout(machine)
    return render_template(
        TEMPLATE,
        cluster=topo.cluster,
        machine=machine,
        address=topo.address(machine),
        pooler=pooler,
        pg_port=topo.pg_port,
        auth_file=layout.pgbouncer_userlist,
        auth_user=POOLER_USER,
        auth_query=AUTH_QUERY,
        tls=daemon_tls(layout, "pgbouncer"),
    )


def pgbouncer_userlist(ctx: RenderContext) -> str:
    """The auth file: POOLER_USER only. Its format quotes with `"` and doubles an inner one."""
    password = ctx.secrets.pooler_password.replace('"', '""')
    return f'"{POOLER_USER}" "{password}"\n'


def pooler_fd_limit(ctx: RenderContext) -> int:
    """File descriptors PgBouncer needs: a client and a server socket each, plus margin."""
    pooler = ctx.cluster.spec.pooler
    return 2 * (pooler.max_client_conn + ADMIN_CONNECTIONS) + 2 * pooler.default_pool_size + 100
