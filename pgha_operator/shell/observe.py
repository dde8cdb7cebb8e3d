"""Take one Observed snapshot of a cluster: machines, files, services and component facts.

I/O lives here, through the provider's hosts and the Clients; parsing lives in core/facts.
Component reads never raise for an unreachable component: they report it as a fact.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext

from pgha_operator.core.facts.catalog import CatalogFacts
from pgha_operator.core.facts.observed import MachineFact, Observed
from pgha_operator.core.facts.reinit import ReinitRecord
from pgha_operator.core.facts.types import EtcdFacts, PatroniFacts
from pgha_operator.core.plan import Desired, content_hash
from pgha_operator.core.render import (
    ADMIN_USER,
    APP_DATABASE,
    APP_USER,
    POOLER_USER,
    SUPERUSER,
    Secrets,
)
from pgha_operator.core.render.haproxy import STATS_USER
from pgha_operator.core.services import ServiceState
from pgha_operator.core.spec import PostgresSpec
from pgha_operator.shell.clients import Clients, ComponentError, PostgresApi
from pgha_operator.shell.clients.postgres import PRIMARY_TIMEOUT
from pgha_operator.shell.observe_backup import observe_backup
from pgha_operator.shell.providers.base import Provider
from pgha_operator.shell.start_failures import read_start_failures

ALL_SERVICES = ("etcd", "patroni", "pgbouncer", "haproxy", "keepalived")
# etcd, Patroni and each HAProxy are read in parallel, on threads kept between cycles
# (their own per-node reads run on shell/clients/transport.READERS).
_COMPONENTS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="pgha-observe")
ROLES_TIMEOUT = PRIMARY_TIMEOUT  # seconds to connect to the primary while observing


def observe(
    desired: Desired,
    provider: Provider,
    secrets: Secrets,
    *,
    clients: Clients,
    down: frozenset[str] = frozenset(),
    reinits: Mapping[str, ReinitRecord] | None = None,
) -> Observed:
    """`down`: machines the loop must not repair yet (a drill's marks, the fencer's hold).
    `reinits`: the operator's memory of its reinitialisations (shell/state/reinit_history.py)."""
    topo = desired.topology
    machines = {m.name: m for m in provider.machines()}
    # A stopped machine (nspawn, vagrant) is listed but cannot be asked anything.
    up = {name for name, fact in machines.items() if fact.exists}
    wanted = {m.name for m in topo.machines}
    # Leaving machines may still be etcd members, even the only ones that answer.
    leaving_etcd = [
        topo.etcd_client_url_at(fact.address)
        for name, fact in sorted(machines.items())
        if name in up and name not in wanted and fact.address
    ]
    with nullcontext(_COMPONENTS) as pool:
        etcd = pool.submit(clients.observe_etcd, [*topo.etcd_client_urls, *leaving_etcd])
        patroni = pool.submit(
            clients.observe_patroni, [topo.rest_api_url(n) for n in topo.postgres]
        )
        ports = desired.cluster.spec.load_balancer.ports
        stats_auth = (STATS_USER, secrets.stats_password)
        haproxy = {
            lb: pool.submit(
                clients.observe_haproxy, f"http://{topo.address(lb)}:{ports.stats}/", stats_auth
            )
            for lb in topo.loadbalancers
        }
        files = _file_hashes(desired, provider, up)
        services = _service_states(desired, provider, machines, up)
        etcd_facts = etcd.result()
        etcd_data = _etcd_data(desired, provider, up, services, etcd_facts)
        patroni_facts = patroni.result()
        roles, databases, catalog = observe_roles(
            patroni_facts, secrets, clients, desired.cluster.spec.postgres
        )
        return Observed(
            machines=machines,
            files=files,
            services=services,
            etcd=etcd_facts,
            patroni=patroni_facts,
            haproxy={lb: fut.result() for lb, fut in haproxy.items()},
            roles=roles,
            databases=databases,
            catalog=catalog,
            etcd_data=etcd_data,
            down=down,
            start_failures=read_start_failures(provider, patroni_facts, up, topo.cluster),
            reinits=dict(reinits or {}),
            backup=observe_backup(
                desired, provider, up, patroni_facts, secrets, clients, ROLES_TIMEOUT
            ),
            now=time.time(),
        )


def _file_hashes(
    desired: Desired, provider: Provider, up: set[str]
) -> dict[tuple[str, str], str | None]:
    files: dict[tuple[str, str], str | None] = {}
    for f in desired.files:
        if f.machine not in up:
            continue
        data = provider.host(f.machine).read(f.path)
        files[(f.machine, f.path)] = None if data is None else content_hash(data)
    return files


def _service_states(
    desired: Desired, provider: Provider, machines: Mapping[str, MachineFact], up: set[str]
) -> dict[tuple[str, str], ServiceState]:
    services: dict[tuple[str, str], ServiceState] = {}
    wanted = {m.name for m in desired.topology.machines}
    for machine in [m for m in machines if m in up]:
        host = provider.host(machine)
        # A machine that left the manifest: look at whatever it may still run.
        names = desired.services.get(machine, ()) if machine in wanted else ALL_SERVICES
        for name in names:
            services[(machine, name)] = host.service(name).state()
    return services


def _etcd_data(
    desired: Desired,
    provider: Provider,
    up: set[str],
    services: Mapping[tuple[str, str], ServiceState],
    etcd: EtcdFacts,
) -> dict[str, bool]:
    """Whether an etcd machine's data dir holds a member, looked at (one command each) where
    plan reads it: etcd not running there, or no started member at the machine's peer URL
    (plan finds members by peer URL). A running member's data dir is not asked: that is a
    process per member and cycle (on the local provider) for a fact no plan reads."""
    topo = desired.topology
    started = {url for m in etcd.members if m.started for url in m.peer_urls}
    return {
        name: provider.host(name).run(["test", "-d", f"{path}/member"], check=False, timeout=10).ok
        for name, path in desired.etcd_data_dirs.items()
        if name in up
        and (
            services.get((name, "etcd")) != ServiceState.RUNNING
            or topo.etcd_peer_url(name) not in started
        )
    }


def observe_roles(
    facts: PatroniFacts, secrets: Secrets, clients: Clients, spec: PostgresSpec | None = None
) -> tuple[frozenset[str] | None, frozenset[str] | None, CatalogFacts | None]:
    """The operator's roles and databases that exist on the primary, and the declared ones
    as its catalog has them (asked as the superuser, on the node directly); None for each
    when no primary answers."""
    leader = facts.leader
    if leader is None or leader.state != "running":
        return None, None, None
    db = clients.postgres(
        leader.host, leader.port, SUPERUSER, secrets.superuser_password, timeout=ROLES_TIMEOUT
    )
    try:
        roles = db.existing_roles([ADMIN_USER, APP_USER, POOLER_USER])
        databases = db.existing_databases([APP_DATABASE])
        return roles, databases, _catalog(db, spec)
    except ComponentError:
        return None, None, None


def _catalog(db: PostgresApi, spec: PostgresSpec | None) -> CatalogFacts | None:
    """Only for a manifest that declares roles or databases. Extensions are read only in
    the databases meant to stay: a database to drop is never connected to."""
    if spec is None or not (spec.roles or spec.databases):
        return None
    return db.read_catalog(
        [r.name for r in spec.roles],
        [d.name for d in spec.databases],
        [d.name for d in spec.databases if d.ensure == "present"],
    )
