"""libpq passfiles (pgpass format) for the cluster's login roles, so that clients connect
without a password on their command line or in their environment (`dsn`, `psql`).

PURE: the text; shell/state/passfiles.py keeps one file per role in the state dir (0600).
Each line is `host:port:database:user:password`; libpq takes the first line matching the
connection, so a file lists every address the role may dial: the load balancers' ports
and (for `--node`) each PostgreSQL node.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pgha_operator.core.render.context import ADMIN_USER, APP_USER, SUPERUSER, Secrets
from pgha_operator.core.spec import Cluster
from pgha_operator.core.spec.catalog import declared_logins
from pgha_operator.core.topology import Topology

DIRECTORY = "passfiles"


def escape(value: str) -> str:
    r"""pgpass fields escape `\` and `:` with a backslash."""
    return value.replace("\\", "\\\\").replace(":", "\\:")


def passfile_text(user: str, password: str, endpoints: Iterable[tuple[str, int]]) -> str:
    return "".join(
        f"{escape(host)}:{port}:*:{escape(user)}:{escape(password)}\n"
        for host, port in dict.fromkeys(endpoints)
    )


def endpoints(cluster: Cluster, topology: Topology, user: str) -> list[tuple[str, int]]:
    """Where `user` may connect: the load balancers and their VIP (not for the superuser, which they
    refuse unless spec.postgres.superuserThroughLoadBalancer), then every node."""
    ports = cluster.spec.load_balancer.ports
    through = user != SUPERUSER or cluster.spec.postgres.superuser_through_load_balancer
    out = []
    if through:
        balancers = [topology.address(lb) for lb in topology.loadbalancers]
        if vip := cluster.spec.load_balancer.vip:
            balancers.append(str(vip.address))  # what dsn names when there is one
        for address in balancers:
            out += [(address, ports.primary), (address, ports.replicas)]
            if cluster.spec.pooler.enabled:
                out.append((address, ports.pooler))
    out += [(topology.address(node), topology.pg_port) for node in topology.postgres]
    return out


def login_passwords(cluster: Cluster, secrets: Secrets) -> dict[str, str]:
    """Every login a passfile is kept for: the operator's app, admin and superuser, and the
    declared login roles that have a generated password."""
    out = {
        APP_USER: secrets.app_password,
        ADMIN_USER: secrets.admin_password,
        SUPERUSER: secrets.superuser_password,
    }
    for role in declared_logins(cluster.spec.postgres.roles):
        password = secrets.role_password(role)
        if password is not None:
            out[role] = password
    return out


def passfiles(cluster: Cluster, topology: Topology, secrets: Secrets) -> Mapping[str, str]:
    """Role -> the text of its passfile."""
    return {
        user: passfile_text(user, password, endpoints(cluster, topology, user))
        for user, password in login_passwords(cluster, secrets).items()
    }
