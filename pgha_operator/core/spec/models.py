"""The manifest as pydantic v2 models: frozen, strict where YAML would guess, camelCase in
the file. Each model checks its own fields; rules that span fields live in rules.py."""

from __future__ import annotations

import posixpath
from ipaddress import IPv4Address, IPv4Network
from pathlib import PurePosixPath
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from pgha_operator.core.spec.backup import BackupSpec
from pgha_operator.core.spec.catalog import DatabaseSpec, RoleSpec
from pgha_operator.core.spec.fence_agent import FenceAgentSpec
from pgha_operator.core.spec.parameters import CheckedValue, ParameterName
from pgha_operator.core.spec.patterns import (
    DURATION_PATTERN,
    HBA_TOKEN_PATTERN,
    NAME_PATTERN,
    NAMESPACE_PATTERN,
)
from pgha_operator.core.spec.recovery import BootstrapSpec
from pgha_operator.core.spec.rules import cluster_problems
from pgha_operator.core.spec.timing import Timing, duration_ms, resolve_timing

API_VERSION = "pgha/v1"
KIND = "Cluster"

LOOPBACK = IPv4Network("127.0.0.0/8")

# Context flag for Cluster validation: the loader collects the cross-field rules itself
# (as separate problems with paths and lines) instead of one joined ValueError.
DEFER_RULES = "pgha_defer_cluster_rules"


class Model(BaseModel):
    """Every manifest model: unknown fields refused, frozen, camelCase in the YAML."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True
    )


# --- providers --------------------------------------------------------------------------


class LocalProviderSpec(Model):
    """Machines are directories on this host, each with its own loopback address."""

    type: Literal["local"]
    network: IPv4Network = IPv4Network("127.0.10.0/24")

    @field_validator("network")
    @classmethod
    def _loopback(cls, network: IPv4Network) -> IPv4Network:
        if not network.subnet_of(LOOPBACK):
            raise ValueError(
                f"{network} is not a loopback network: the local provider gives each "
                "machine an address inside 127.0.0.0/8"
            )
        return network


class NspawnProviderSpec(Model):
    """systemd-nspawn containers, each in its own network namespace (root only)."""

    type: Literal["nspawn"]
    network: IPv4Network = IPv4Network("10.231.0.0/24")
    rootfs_cache: str = "/var/cache/pgha-operator/rootfs"


class VagrantProviderSpec(Model):
    """VMs made by `vagrant up` from the machine list the operator writes."""

    type: Literal["vagrant"]
    network: IPv4Network = IPv4Network("192.168.50.0/24")
    box: str = "generic/debian12"
    box_version: str = "4.3.12"
    vm_provider: Literal["virtualbox", "libvirt", "docker"] = "virtualbox"
    memory: Annotated[int, Strict(), Field(ge=512)] = 1024
    cpus: Annotated[int, Strict(), Field(ge=1)] = 1
    # vmProvider docker: its box is imported from the nspawn provider's cached rootfs.
    rootfs_cache: str = "/var/cache/pgha-operator/rootfs"


class SshProviderSpec(Model):
    """Existing hosts reached over SSH; the operator never creates or destroys them."""

    type: Literal["ssh"]
    network: IPv4Network | None = None
    user: str = "root"
    port: Annotated[int, Field(ge=1, le=65535)] = 22
    key_file: str
    known_hosts: str


ProviderSpec = Annotated[
    LocalProviderSpec | NspawnProviderSpec | VagrantProviderSpec | SshProviderSpec,
    Field(discriminator="type"),
]
PROVIDER_TYPES: dict[str, type[Model]] = {
    "local": LocalProviderSpec,
    "nspawn": NspawnProviderSpec,
    "vagrant": VagrantProviderSpec,
    "ssh": SshProviderSpec,
}

# --- components ---------------------------------------------------------------------------


class MachineRef(Model):
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    address: IPv4Address

    @field_validator("address")
    @classmethod
    def _usable(cls, address: IPv4Address) -> IPv4Address:
        if address.is_unspecified or address.is_multicast or address == IPv4Address(2**32 - 1):
            raise ValueError(f"{address} cannot be a machine's address")
        return address


class EtcdSpec(Model):
    members: Annotated[int, Strict(), Field(ge=1, le=9)] = 3
    placement: Literal["dedicated", "colocated"] = "dedicated"
    machines: list[MachineRef] | None = None
    client_port: Annotated[int, Strict(), Field(ge=1, le=65535)] = 2379
    peer_port: Annotated[int, Strict(), Field(ge=1, le=65535)] = 2380


class HbaRule(Model):
    """One pg_hba line. `trust` is not offered: every connection authenticates. Network rules
    are `hostssl`: `host` and `hostnossl` would let a password cross the network in plaintext,
    so they are accepted only to `reject`."""

    type: Literal["host", "hostssl", "hostnossl", "local"] = "hostssl"
    database: Annotated[str, Field(pattern=HBA_TOKEN_PATTERN)] = "all"
    user: Annotated[str, Field(pattern=HBA_TOKEN_PATTERN)] = "all"
    address: IPv4Network | None = None
    method: Literal["scram-sha-256", "peer", "reject", "cert"] = "scram-sha-256"

    @field_validator("database", "user")
    @classmethod
    def _no_file(cls, token: str) -> str:
        # pg_hba reads `@name` as "the names listed in the file `name`": a file the
        # manifest does not show, on every node.
        if any(word.startswith("@") for word in token.split(",")):
            raise ValueError(
                f"{token!r} includes a file ('@...'): list the names here, separated by commas"
            )
        return token

    @model_validator(mode="after")
    def _address_matches_type(self) -> HbaRule:
        if self.type == "local" and self.address is not None:
            raise ValueError("a 'local' rule (Unix socket) takes no address")
        if self.type != "local" and self.address is None:
            raise ValueError(
                f"a '{self.type}' rule needs an address (CIDR, e.g. 10.0.0.0/24 or 0.0.0.0/0)"
            )
        if self.method == "peer" and self.type != "local":
            raise ValueError("method 'peer' works only on 'local' rules")
        if self.method == "cert" and self.type != "hostssl":
            raise ValueError("method 'cert' works only on 'hostssl' rules")
        if self.type in ("host", "hostnossl") and self.method != "reject":
            raise ValueError(
                f"a '{self.type}' rule with method '{self.method}' lets clients from "
                f"{self.address} log in without TLS, their traffic in plaintext on the "
                "network; use type 'hostssl' (the default: the operator turns TLS on with "
                f"the cluster's certificates). '{self.type}' is accepted only with method "
                "'reject'"
            )
        return self


class PostgresSpec(Model):
    version: Literal[15] = 15
    instances: Annotated[int, Strict(), Field(ge=1, le=89)] = 3
    machines: list[MachineRef] | None = None
    port: Annotated[int, Strict(), Field(ge=1, le=65535)] = 5432
    parameters: dict[ParameterName, CheckedValue] = Field(default_factory=dict)
    hba: list[HbaRule] = Field(default_factory=list)
    synchronous: Literal["off", "on", "strict"] = "off"
    # Off by default: the superuser logs in on each node, never through HAProxy (#12).
    superuser_through_load_balancer: Annotated[bool, Strict()] = False
    # Declared roles and databases (core/spec/catalog.py), kept as declared by the operator.
    roles: tuple[RoleSpec, ...] = ()
    databases: tuple[DatabaseSpec, ...] = ()


class PatroniSpec(Model):
    """Patroni's timing and where Patroni comes from; unset timing comes from the profile."""

    # pypi: our pinned Patroni in a venv under /opt (the tested default); debian: Debian's
    # `patroni` package (3.0.2 on Debian 12). Fixed when the cluster is created.
    source: Literal["pypi", "debian"] = "pypi"

    ttl: Annotated[int, Strict(), Field(ge=20)] | None = None
    loop_wait: Annotated[int, Strict(), Field(ge=1)] | None = None
    retry_timeout: Annotated[int, Strict(), Field(ge=3)] | None = None
    maximum_lag_on_failover: Annotated[int, Strict(), Field(ge=0)] = 1048576
    rest_api_port: Annotated[int, Strict(), Field(ge=1, le=65535)] = 8008
    namespace: Annotated[str, Field(pattern=NAMESPACE_PATTERN)] = "/service/"


class Ports(Model):
    primary: Annotated[int, Strict(), Field(ge=1, le=65535)] = 5000
    replicas: Annotated[int, Strict(), Field(ge=1, le=65535)] = 5001
    stats: Annotated[int, Strict(), Field(ge=1, le=65535)] = 7000
    # The primary through the pooler (spec.pooler); bound only when the pooler is enabled.
    pooler: Annotated[int, Strict(), Field(ge=1, le=65535)] = 6432


Duration = Annotated[str, Field(pattern=DURATION_PATTERN)]


class HealthCheck(Model):
    """HAProxy server check timing; unset values come from the cluster's profile."""

    inter: Duration | None = None
    fastinter: Duration | None = None
    downinter: Duration | None = None
    rise: Annotated[int, Strict(), Field(ge=1)] | None = None
    fall: Annotated[int, Strict(), Field(ge=1)] | None = None

    @field_validator("inter", "fastinter", "downinter")
    @classmethod
    def _positive(cls, value: str | None) -> str | None:
        if value is not None and duration_ms(value) == 0:
            raise ValueError(f"{value!r} is zero: a check interval must be positive")
        return value


# VRRP version 3 carries the advertisement interval in centiseconds, 12 bits (RFC 5798).
VRRP_ADVERT_MS = (10, 40950)


class VipSpec(Model):
    """A virtual IP in front of the load balancers: keepalived on each, VRRP version 3 with
    unicast peers. VRRPv3 has no authentication: the cluster's own network only
    (docs/connections.md has the measured takeover times and why this interval)."""

    address: IPv4Address
    prefix: Annotated[int, Strict(), Field(ge=1, le=32)] = 24
    # None: the interface carrying the machine's own address (observed on the machine).
    interface: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,15}$")] | None = None
    virtual_router_id: Annotated[int, Strict(), Field(ge=1, le=255)] = 51
    advert_interval: Duration = "100ms"

    @field_validator("advert_interval")
    @classmethod
    def _vrrp3_interval(cls, value: str) -> str:
        ms = duration_ms(value)
        low, high = VRRP_ADVERT_MS
        if ms % 10 or not low <= ms <= high:
            raise ValueError(
                f"{value!r}: VRRP version 3 counts in steps of 10ms from {low}ms to {high}ms"
            )
        return value


class LoadBalancerSpec(Model):
    instances: Annotated[int, Strict(), Field(ge=1, le=50)] = 1
    machines: list[MachineRef] | None = None
    ports: Ports = Ports()
    health_check: HealthCheck = HealthCheck()
    maxconn: Annotated[int, Strict(), Field(ge=1)] = 200
    vip: VipSpec | None = None


class FailoverSpec(Model):
    """`auto`: where the provider can power machines off, the operator fences a dead primary's
    machine and releases its leader key so Patroni elects at once; `off`: the lease decides.
    `switchover: assisted`: the operator releases the leader key as soon as the old primary
    shut down and the candidate holds all its WAL; `patroni`: Patroni's own timing."""

    fencing: Literal["auto", "off"] = "auto"
    probe_interval_ms: Annotated[int, Field(ge=50, le=5000)] = 200
    probe_failures: Annotated[int, Field(ge=2, le=50)] = 3
    switchover: Literal["assisted", "patroni"] = "assisted"
    # A ClusterLabs fence agent for providers that cannot power machines off (ssh)
    fence_agent: FenceAgentSpec | None = None


class PoolerSpec(Model):
    """PgBouncer on every PostgreSQL node in front of its local PostgreSQL, reached through
    the load balancer's `ports.pooler` (the primary's pooler). Off unless enabled."""

    enabled: Annotated[bool, Strict()] = False
    # transaction: a server connection per transaction (session state such as SET, advisory
    # locks or prepared statements by name does not survive between transactions)
    mode: Literal["transaction", "session", "statement"] = "transaction"
    port: Annotated[int, Strict(), Field(ge=1, le=65535)] = 6432  # on each node
    default_pool_size: Annotated[int, Strict(), Field(ge=1, le=10000)] = 20
    min_pool_size: Annotated[int, Strict(), Field(ge=0, le=10000)] = 0
    reserve_pool_size: Annotated[int, Strict(), Field(ge=0, le=10000)] = 5
    max_client_conn: Annotated[int, Strict(), Field(ge=1, le=100000)] = 1000
    # 0: no cap per database (PgBouncer's default)
    max_db_connections: Annotated[int, Strict(), Field(ge=0, le=10000)] = 0

    @model_validator(mode="after")
    def _pool_sizes(self) -> PoolerSpec:
        if self.min_pool_size > self.default_pool_size:
            raise ValueError(
                f"minPoolSize ({self.min_pool_size}) must not exceed defaultPoolSize "
                f"({self.default_pool_size})"
            )
        return self


# Context entry for Cluster validation: the folder of the manifest file, against which
# relative paths in it (spec.tls.ca) are resolved.
MANIFEST_DIR = "pgha_manifest_dir"


class BroughtCa(Model):
    """A CA the user brings instead of the one the operator generates: PEM files on the
    operator's host. The key signs the cluster's certificates and stays on that host.
    A relative path is relative to the manifest file's folder (made absolute on loading,
    so last-applied.yaml holds the absolute path)."""

    cert: Annotated[str, Field(min_length=1)]
    key: Annotated[str, Field(min_length=1)]

    @field_validator("cert", "key")
    @classmethod
    def _from_manifest_dir(cls, value: str, info: ValidationInfo) -> str:
        folder = info.context.get(MANIFEST_DIR) if isinstance(info.context, dict) else None
        if folder is None or PurePosixPath(value).is_absolute():
            return value
        return posixpath.normpath(posixpath.join(folder, value))


class TlsSpec(Model):
    """TLS is always on; these only tune it. Certificates last `certificateDays` and are
    renewed `renewBeforeDays` before they expire."""

    ca: BroughtCa | None = None
    certificate_days: Annotated[int, Strict(), Field(ge=2, le=825)] = 90
    renew_before_days: Annotated[int, Strict(), Field(ge=1)] = 7

    @model_validator(mode="after")
    def _renew_inside_validity(self) -> TlsSpec:
        if self.renew_before_days >= self.certificate_days:
            raise ValueError(
                f"renewBeforeDays ({self.renew_before_days}) must be less than "
                f"certificateDays ({self.certificate_days}), or every cycle would renew"
            )
        return self


class ClusterSpec(Model):
    provider: ProviderSpec
    profile: Literal["fast", "seed"] = "fast"
    etcd: EtcdSpec = EtcdSpec()
    postgres: PostgresSpec = PostgresSpec()
    patroni: PatroniSpec = PatroniSpec()
    load_balancer: LoadBalancerSpec = LoadBalancerSpec()
    drills: Literal["allowed", "forbidden"] = "forbidden"
    failover: FailoverSpec = FailoverSpec()
    tls: TlsSpec = TlsSpec()
    # None: no backups, no WAL archiving (core/spec/backup.py).
    backup: BackupSpec | None = None
    pooler: PoolerSpec = PoolerSpec()
    # recovery: built from another cluster's backup (core/spec/recovery.py)
    bootstrap: BootstrapSpec = BootstrapSpec()


class Metadata(Model):
    name: Annotated[str, Field(pattern=NAME_PATTERN)]


class Cluster(Model):
    api_version: Literal["pgha/v1"]
    kind: Literal["Cluster"]
    metadata: Metadata
    spec: ClusterSpec

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def timing(self) -> Timing:
        return resolve_timing(self.spec)

    @model_validator(mode="after")
    def _checks(self, info: ValidationInfo) -> Cluster:
        if isinstance(info.context, dict) and info.context.get(DEFER_RULES):
            return self  # the loader reports them one by one (parse_text)
        problems = list(cluster_problems(self))
        if problems:
            raise ValueError("; ".join(f"{path}: {reason}" for path, reason in problems))
        return self
