"""Take one Observed snapshot of a cluster: machines, files, services and component facts.

I/O lives here; parsing lives in the observe/ parsers. Component collectors never raise
for an unreachable component: they report it as a fact.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import psycopg

from pgha_operator.core.facts.observed import Observed
from pgha_operator.core.facts.types import PatroniFacts
from pgha_operator.core.plan import Desired, content_hash
from pgha_operator.core.render import ADMIN_USER, REST_USER, SUPERUSER, Secrets
from pgha_operator.core.services import ServiceState
from pgha_operator.shell.clients.etcd import collect_etcd
from pgha_operator.shell.clients.haproxy import collect_haproxy
from pgha_operator.shell.clients.patroni import collect_patroni
from pgha_operator.shell.providers.base import Provider

ALL_SERVICES = ("etcd", "patroni", "haproxy")


def observe(desired: Desired, provider: Provider, secrets: Secrets) -> Observed:
    topo = desired.topology
    machines = {m.name: m for m in provider.machines()}
    # A stopped machine (nspawn, vagrant) is listed but cannot be asked anything.
    up = {name for name, fact in machines.items() if fact.exists}
    with ThreadPoolExecutor(max_workers=4) as pool:
        etcd = pool.submit(collect_etcd, topo.etcd_client_urls)
        patroni = pool.submit(
            collect_patroni,
            [topo.rest_api_url(n) for n in topo.postgres],
            (REST_USER, secrets.rest_password),
        )
        ports = desired.cluster.spec.load_balancer.ports
        haproxy = {
            lb: pool.submit(collect_haproxy, f"http://{topo.address(lb)}:{ports.stats}/")
            for lb in topo.loadbalancers
        }
        files: dict[tuple[str, str], str | None] = {}
        services: dict[tuple[str, str], ServiceState] = {}
        for f in desired.files:
            if f.machine not in up:
                continue
            data = provider.host(f.machine).read(f.path)
            files[(f.machine, f.path)] = None if data is None else content_hash(data)
        wanted = {m.name for m in topo.machines}
        for machine in [m for m in machines if m in up]:
            host = provider.host(machine)
            # A machine that left the manifest: look at whatever it may still run.
            names = desired.services.get(machine, ()) if machine in wanted else ALL_SERVICES
            for name in names:
                services[(machine, name)] = host.service(name).state()
        etcd_data = {
            name: provider.host(name)
            .run(["test", "-d", f"{path}/member"], check=False, timeout=10)
            .ok
            for name, path in desired.etcd_data_dirs.items()
            if name in up
        }
        patroni_facts = patroni.result()
        return Observed(
            machines=machines,
            files=files,
            services=services,
            etcd=etcd.result(),
            patroni=patroni_facts,
            haproxy={lb: fut.result() for lb, fut in haproxy.items()},
            roles=collect_roles(patroni_facts, secrets),
            etcd_data=etcd_data,
        )


def collect_roles(facts: PatroniFacts, secrets: Secrets) -> frozenset[str] | None:
    """The operator's roles that exist on the primary; None when no primary answers."""
    leader = facts.leader
    if leader is None or leader.state != "running":
        return None
    try:
        with psycopg.connect(
            host=leader.host,
            port=leader.port,
            user=SUPERUSER,
            password=secrets.superuser_password,
            dbname="postgres",
            connect_timeout=2,
        ) as conn:
            rows = conn.execute(
                "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", ([ADMIN_USER],)
            ).fetchall()
    except psycopg.Error:
        return None
    return frozenset(r[0] for r in rows)
