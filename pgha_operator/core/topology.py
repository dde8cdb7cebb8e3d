"""Spec -> the machines a cluster wants, their roles, addresses, ports and file layout (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from ipaddress import IPv4Address, IPv4Network

from pgha_operator.core.spec import Cluster, ClusterSpec, MachineRef
from pgha_operator.core.vip import vip_problems

# Derived addresses: host offsets inside the provider's network, one block per role.
OFFSETS = {"postgres": 10, "etcd": 100, "loadbalancer": 200}
DEFAULT_NAMES = {"postgres": "node", "etcd": "etcd", "loadbalancer": "haproxy"}


class Role(StrEnum):
    ETCD = "etcd"
    POSTGRES = "postgres"
    LOADBALANCER = "loadbalancer"


@dataclass(frozen=True)
class Machine:
    name: str
    address: str
    roles: frozenset[Role]

    def has(self, role: Role) -> bool:
        return role in self.roles


@dataclass(frozen=True)
class Topology:
    cluster: str
    machines: tuple[Machine, ...]
    etcd: tuple[str, ...]  # machine names, in member order
    postgres: tuple[str, ...]
    loadbalancers: tuple[str, ...]
    etcd_client_port: int
    etcd_peer_port: int
    pg_port: int
    rest_api_port: int

    @cached_property
    def _by_name(self) -> dict[str, Machine]:
        # Render and plan look machines up by name for every machine: keep that O(1).
        return {m.name: m for m in self.machines}

    def machine(self, name: str) -> Machine:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(name) from None

    def address(self, name: str) -> str:
        return self.machine(name).address

    # etcd speaks TLS only (client-cert-auth on both ports): every URL is https. Machines
    # leaving the manifest have no entry here, so the URLs are also built from an address.
    @property
    def etcd_client_urls(self) -> tuple[str, ...]:
        return tuple(self.etcd_client_url_at(self.address(n)) for n in self.etcd)

    def etcd_client_url_at(self, address: str) -> str:
        return f"https://{address}:{self.etcd_client_port}"

    def etcd_peer_url(self, name: str) -> str:
        return self.etcd_peer_url_at(self.address(name))

    def etcd_peer_url_at(self, address: str) -> str:
        return f"https://{address}:{self.etcd_peer_port}"

    def rest_api_url(self, name: str) -> str:
        return f"https://{self.address(name)}:{self.rest_api_port}"  # Patroni's REST: TLS only


def _derive(
    role: str, given: list[MachineRef] | None, count: int, network: IPv4Network | None
) -> list[tuple[str, str]]:
    if given is not None:
        return [(m.name, str(m.address)) for m in given]
    if network is None:
        # Only the ssh provider has no network; its manifests must list machines.
        return [(f"{DEFAULT_NAMES[role]}{i}", "") for i in range(1, count + 1)]
    base = int(network.network_address) + OFFSETS[role]
    return [(f"{DEFAULT_NAMES[role]}{i}", str(IPv4Address(base + i))) for i in range(1, count + 1)]


def build(cluster: Cluster) -> Topology:
    spec = cluster.spec
    network = spec.provider.network
    pg = _derive("postgres", spec.postgres.machines, spec.postgres.instances, network)
    lb = _derive("loadbalancer", spec.load_balancer.machines, spec.load_balancer.instances, network)
    if spec.etcd.placement == "colocated":
        etcd = pg[: spec.etcd.members]
    else:
        etcd = _derive("etcd", spec.etcd.machines, spec.etcd.members, network)
    roles: dict[str, set[Role]] = {}
    addresses: dict[str, str] = {}
    for role, entries in ((Role.ETCD, etcd), (Role.POSTGRES, pg), (Role.LOADBALANCER, lb)):
        for name, address in entries:
            roles.setdefault(name, set()).add(role)
            addresses.setdefault(name, address)
    machines = tuple(Machine(n, addresses[n], frozenset(r)) for n, r in roles.items())
    return Topology(
        cluster=cluster.name,
        machines=machines,
        etcd=tuple(n for n, _ in etcd),
        postgres=tuple(n for n, _ in pg),
        loadbalancers=tuple(n for n, _ in lb),
        etcd_client_port=spec.etcd.client_port,
        etcd_peer_port=spec.etcd.peer_port,
        pg_port=spec.postgres.port,
        rest_api_port=spec.patroni.rest_api_port,
    )


# One block of machines the spec asks for: (field path, listed machines, count, role).
_Section = tuple[str, list[MachineRef] | None, int, str]


def topology_problems(cluster: Cluster) -> list[tuple[str, str]]:
    """Machines the spec cannot have, as (field path, reason): a network too small for the
    derived addresses, listed addresses outside the provider's network, names or
    addresses used twice (within a role or across roles), and a VIP it cannot carry."""
    spec = cluster.spec
    network = spec.provider.network
    problems: list[tuple[str, str]] = []
    names: dict[str, str] = {}  # name -> where it was first used
    addresses: dict[str, str] = {}  # address -> where it was first used
    for path, given, count, role in _sections(spec):
        if (underivable := _underivable(spec, path, given, count, role)) is not None:
            problems.append(underivable)
            continue
        for index, (name, address) in enumerate(_derive(role, given, count, network)):
            if given is not None:
                where = f"{path}.machines.{index}"
                what = where
                problems.extend(
                    (f"{where}.address", reason)
                    for reason in _address_problems(spec.provider.type, network, address)
                )
            else:
                where = path
                what = f"{path} (derived {name})"
            problems.extend(_reuse_problems(where, what, name, address, names, addresses))
    return problems + _balancer_source_problems(spec) + vip_problems(spec, addresses)


# Where a host's own outgoing loopback connections come from, whatever address they dial.
LOOPBACK_SOURCE = "127.0.0.1"


def _balancer_source_problems(spec: ClusterSpec) -> list[tuple[str, str]]:
    """pg_hba refuses the superuser by the load balancer's address; at 127.0.0.1 that is
    also where Patroni (pg_rewind) and the operator come from, so it could not be refused."""
    if spec.postgres.superuser_through_load_balancer:
        return []
    return [
        (
            f"spec.loadBalancer.machines.{index}.address",
            f"{LOOPBACK_SOURCE} is where every node's own connections come from on one host, "
            "so the superuser could not be refused through the load balancer there; "
            "use another loopback address (e.g. 127.0.10.201)",
        )
        for index, m in enumerate(spec.load_balancer.machines or [])
        if str(m.address) == LOOPBACK_SOURCE
    ]


def _sections(spec: ClusterSpec) -> list[_Section]:
    """The spec's machine blocks in member order; colocated etcd members have none."""
    sections: list[_Section] = [
        ("spec.postgres", spec.postgres.machines, spec.postgres.instances, "postgres")
    ]
    if spec.etcd.placement == "dedicated":
        sections.append(("spec.etcd", spec.etcd.machines, spec.etcd.members, "etcd"))
    sections.append(
        (
            "spec.loadBalancer",
            spec.load_balancer.machines,
            spec.load_balancer.instances,
            "loadbalancer",
        )
    )
    return sections


def _underivable(
    spec: ClusterSpec, path: str, given: list[MachineRef] | None, count: int, role: str
) -> tuple[str, str] | None:
    """Why a block that lists no machines cannot have its addresses derived, if it cannot."""
    if given is not None:
        return None
    network = spec.provider.network
    if network is None:
        return (
            f"{path}.machines",
            f"the {spec.provider.type} provider has no network to derive addresses "
            "from; list every machine (name and address)",
        )
    if OFFSETS[role] + count >= network.num_addresses - 1:
        first = IPv4Address(int(network.network_address) + OFFSETS[role] + 1)
        return (
            "spec.provider.network",
            f"{network} is too small to derive {count} {role} addresses "
            f"from {first} on; use a /24 or bigger, or list the machines",
        )
    return None


def _reuse_problems(
    where: str,
    what: str,
    name: str,
    address: str,
    names: dict[str, str],
    addresses: dict[str, str],
) -> list[tuple[str, str]]:
    """A name or address used before (by `names` / `addresses`), then record this use."""
    problems = []
    if name in names:
        problems.append((f"{where}.name", f"{name!r} is already used by {names[name]}"))
    names.setdefault(name, what)
    if address in addresses:
        problems.append((f"{where}.address", f"{address} is already used by {addresses[address]}"))
    addresses.setdefault(address, what)
    return problems


def _address_problems(provider: str, network: IPv4Network | None, address: str) -> list[str]:
    addr = IPv4Address(address)
    if provider == "local":
        if not addr.is_loopback:
            return [f"{address} is not a loopback address; the local provider needs 127.x.y.z"]
        return []
    if network is None:
        return []
    if addr not in network:
        return [f"{address} is outside spec.provider.network ({network})"]
    if network.num_addresses > 2 and addr in (network.network_address, network.broadcast_address):
        return [f"{address} is the network or broadcast address of {network}"]
    return []


# --- where things live on a machine ---------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Absolute paths on one machine. Real machines use the FHS; the local provider puts a
    machine under its own directory (root), so several machines share one host."""

    root: str
    patroni_config: str
    pg_data: str
    pg_socket_dir: str
    pgpass: str
    etcd_config: str
    etcd_data: str
    haproxy_config: str
    haproxy_socket: str
    services_dir: str  # local supervisor's service definitions
    log_dir: str
    tls_dir: str  # the cluster's certificates, one folder per daemon (render/tls.py)
    pgbouncer_config: str = ""  # pgbouncer.ini (spec.pooler); userlist.txt beside it
    keepalived_config: str = ""  # keepalived.conf (spec.loadBalancer.vip); its check beside it
    keepalived_run: str = ""  # keepalived's pid files

    @property
    def keepalived_check(self) -> str:
        """keepalived's tracked HAProxy check (a root-owned folder: enable_script_security)."""
        return f"{self.keepalived_config.rsplit('/', 1)[0]}/check-haproxy.sh"

    @property
    def pgbouncer_userlist(self) -> str:
        """The auth file: the pooler's own role only (everyone else through auth_query)."""
        return f"{self.pgbouncer_config.rsplit('/', 1)[0]}/userlist.txt"

    def relative(self, path: str) -> str:
        """The path inside the machine (for `render --out`)."""
        if self.root == "/":
            return path.lstrip("/")
        return path.removeprefix(self.root).lstrip("/")


def host_dirs(cluster: str) -> tuple[str, ...]:
    """The directories of one cluster on a real machine: all of its files are under them."""
    return (f"/etc/pgha/{cluster}", f"/var/lib/pgha/{cluster}", f"/run/pgha/{cluster}",
            f"/var/log/pgha/{cluster}")  # fmt: skip


def layout(root: str = "/", cluster: str = "pgha") -> Layout:
    """`root="/"` is a real machine; anything else is a local machine's directory.

    On a real machine everything lives in `pgha` directories named after the cluster, never
    in a package's own paths (Debian's /var/lib/postgresql/15/main, /etc/haproxy,
    /run/postgresql...): two clusters, and the host's own daemons, never share a file."""
    if root == "/":
        etc, lib, run, log = host_dirs(cluster)
        return Layout(
            root="/",
            patroni_config=f"{etc}/patroni.yml",
            pg_data=f"{lib}/postgresql/data",
            pg_socket_dir=f"{run}/postgresql",
            pgpass=f"{lib}/postgresql/pgpass",
            etcd_config=f"{etc}/etcd.conf.yml",
            etcd_data=f"{lib}/etcd",
            haproxy_config=f"{etc}/haproxy.cfg",
            haproxy_socket=f"{run}/haproxy/admin.sock",
            services_dir=f"{etc}/services",
            log_dir=log,
            tls_dir=f"{etc}/tls",
            pgbouncer_config=f"{etc}/pgbouncer/pgbouncer.ini",
            keepalived_config=f"{etc}/keepalived/keepalived.conf",
            keepalived_run=f"{run}/keepalived",
        )
    r = root.rstrip("/")
    return Layout(
        root=r,
        patroni_config=f"{r}/etc/patroni/patroni.yml",
        pg_data=f"{r}/pg/data",
        pg_socket_dir=f"{r}/pg/run",
        pgpass=f"{r}/pg/pgpass",
        etcd_config=f"{r}/etc/etcd/etcd.conf.yml",
        etcd_data=f"{r}/etcd/data",
        haproxy_config=f"{r}/etc/haproxy/haproxy.cfg",
        haproxy_socket=f"{r}/run/haproxy/admin.sock",  # a directory haproxy owns
        services_dir=f"{r}/etc/pgha/services",
        log_dir=f"{r}/var/log/pgha",
        tls_dir=f"{r}/etc/pgha/tls",
        pgbouncer_config=f"{r}/etc/pgbouncer/pgbouncer.ini",
        keepalived_config=f"{r}/etc/keepalived/keepalived.conf",
        keepalived_run=f"{r}/run/keepalived",
    )
