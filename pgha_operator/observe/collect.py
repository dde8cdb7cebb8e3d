"""Take one Observed snapshot of a cluster: machines, files, services and component facts.

I/O lives here; parsing lives in the observe/ parsers. Component collectors never raise
for an unreachable component: they report it as a fact.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from pgha_operator.observe.etcd import collect_etcd
from pgha_operator.observe.haproxy import collect_haproxy
from pgha_operator.observe.patroni import collect_patroni
from pgha_operator.observe.snapshot import Observed
from pgha_operator.plan import Desired, content_hash
from pgha_operator.providers.base import Provider
from pgha_operator.render import REST_USER, Secrets
from pgha_operator.servicedef import ServiceState


def observe(desired: Desired, provider: Provider, secrets: Secrets) -> Observed:
    topo = desired.topology
    machines = {m.name: m for m in provider.machines()}
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
            if f.machine not in machines:
                continue
            data = provider.host(f.machine).read(f.path)
            files[(f.machine, f.path)] = None if data is None else content_hash(data)
        for machine, names in desired.services.items():
            if machine not in machines:
                continue
            host = provider.host(machine)
            for name in names:
                services[(machine, name)] = host.service(name).state()
        return Observed(
            machines=machines,
            files=files,
            services=services,
            etcd=etcd.result(),
            patroni=patroni.result(),
            haproxy={lb: fut.result() for lb, fut in haproxy.items()},
        )
