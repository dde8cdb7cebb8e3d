"""Desired state: the manifest models (pydantic v2) and their loading.

Pure: parsing text into validated, frozen models. Reading the manifest files is the only
I/O here, and it happens before anything on a cluster is touched.

Every refusal is a `Problem`: the file, the field path as written in the YAML
(`spec.etcd.members`), a reason a DBA can act on and, when known, the line.
"""

from __future__ import annotations

import difflib
import re
import typing
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

API_VERSION = "pgha/v1"
KIND = "Cluster"

NAME_PATTERN = r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$|^[a-z]$"
DURATION_PATTERN = r"^[0-9]+(ms|s)$"
NAMESPACE_PATTERN = r"^/([A-Za-z0-9_.-]+/)*$"
HBA_TOKEN_PATTERN = r"^[^\s#]+$"
LOOPBACK = IPv4Network("127.0.0.0/8")

# Context flag for Cluster validation: the loader collects the cross-field rules itself
# (as separate problems with paths and lines) instead of one joined ValueError.
_DEFER_RULES = "pgha_defer_cluster_rules"


class Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True
    )


# --- providers --------------------------------------------------------------------------


class LocalProvider(Model):
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


class NspawnProvider(Model):
    """systemd-nspawn containers, each in its own network namespace (root only)."""

    type: Literal["nspawn"]
    network: IPv4Network = IPv4Network("10.231.0.0/24")
    rootfs_cache: str = "/var/cache/pgha-operator/rootfs"


class VagrantProvider(Model):
    """VMs made by `vagrant up` from the machine list the operator writes."""

    type: Literal["vagrant"]
    network: IPv4Network = IPv4Network("192.168.50.0/24")
    box: str = "generic/debian12"
    box_version: str = "4.3.12"
    vm_provider: Literal["virtualbox", "libvirt"] = "virtualbox"
    memory: Annotated[int, Strict(), Field(ge=512)] = 1024
    cpus: Annotated[int, Strict(), Field(ge=1)] = 1


class SshProvider(Model):
    """Existing hosts reached over SSH; the operator never creates or destroys them."""

    type: Literal["ssh"]
    network: IPv4Network | None = None
    user: str = "root"
    port: Annotated[int, Field(ge=1, le=65535)] = 22
    key_file: str
    known_hosts: str


Provider = Annotated[
    LocalProvider | NspawnProvider | VagrantProvider | SshProvider, Field(discriminator="type")
]
PROVIDER_TYPES: dict[str, type[Model]] = {
    "local": LocalProvider,
    "nspawn": NspawnProvider,
    "vagrant": VagrantProvider,
    "ssh": SshProvider,
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


ParameterValue = str | int | float | bool

# postgresql.conf settings the operator or Patroni own; a manifest must not set them.
MANAGED_PARAMETERS: dict[str, str] = {
    "port": "set spec.postgres.port instead",
    "listen_addresses": "the operator sets it to the machine's address",
    "synchronous_standby_names": "Patroni manages it; set spec.postgres.synchronous instead",
    "hot_standby": "Patroni needs it on",
    "data_directory": "the operator chooses the data directory",
    "config_file": "Patroni writes the configuration files",
    "hba_file": "set spec.postgres.hba instead",
    "ident_file": "Patroni writes the configuration files",
}


class HbaRule(Model):
    """One pg_hba line. `trust` is not offered: every connection authenticates."""

    type: Literal["host", "hostssl", "hostnossl", "local"] = "host"
    database: Annotated[str, Field(pattern=HBA_TOKEN_PATTERN)] = "all"
    user: Annotated[str, Field(pattern=HBA_TOKEN_PATTERN)] = "all"
    address: IPv4Network | None = None
    method: Literal["scram-sha-256", "peer", "reject", "cert"] = "scram-sha-256"

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
        return self


class PostgresSpec(Model):
    version: Literal[15] = 15
    instances: Annotated[int, Strict(), Field(ge=1, le=89)] = 3
    machines: list[MachineRef] | None = None
    port: Annotated[int, Strict(), Field(ge=1, le=65535)] = 5432
    parameters: dict[str, ParameterValue] = Field(default_factory=dict)
    hba: list[HbaRule] = Field(default_factory=list)
    synchronous: Literal["off", "on", "strict"] = "off"

    @field_validator("parameters", mode="before")
    @classmethod
    def _parameters(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value  # pydantic reports the wrong type
        for key, item in value.items():
            if str(key) in MANAGED_PARAMETERS:
                raise PydanticCustomError(
                    "managed_parameter",
                    "{key} cannot be set here: {why}",
                    {"key": str(key), "why": MANAGED_PARAMETERS[str(key)]},
                )
            if not isinstance(item, str | int | float | bool):
                raise PydanticCustomError(
                    "parameter_value",
                    "{key}: expected a number, text or true/false, got {got}",
                    {"key": str(key), "got": _show(item)},
                )
        return value


# Two named timing profiles. `seed` is the original lab's; `fast` is the lowest
# Patroni accepts (ttl floor 20) with the loop/retry LAB-NOTES measured as stable.
PROFILES: dict[str, dict[str, Any]] = {
    "seed": {
        "ttl": 30,
        "loop_wait": 10,
        "retry_timeout": 10,
        "check": {"inter": "3s", "fastinter": "3s", "downinter": "3s", "rise": 2, "fall": 3},
    },
    "fast": {
        "ttl": 20,
        "loop_wait": 1,
        "retry_timeout": 4,
        "check": {
            "inter": "500ms",
            "fastinter": "100ms",
            "downinter": "100ms",
            "rise": 1,
            "fall": 2,
        },
    },
}


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


class LoadBalancerSpec(Model):
    instances: Annotated[int, Strict(), Field(ge=1, le=50)] = 1
    machines: list[MachineRef] | None = None
    ports: Ports = Ports()
    health_check: HealthCheck = HealthCheck()
    maxconn: Annotated[int, Strict(), Field(ge=1)] = 200


class FailoverSpec(Model):
    """`auto`: where the provider can power machines off, the operator fences a dead primary's
    machine and releases its leader key so Patroni elects at once; `off`: the lease decides."""

    fencing: Literal["auto", "off"] = "auto"
    probe_interval_ms: Annotated[int, Field(ge=50, le=5000)] = 200
    probe_failures: Annotated[int, Field(ge=2, le=50)] = 3


class ClusterSpec(Model):
    provider: Provider
    profile: Literal["fast", "seed"] = "fast"
    etcd: EtcdSpec = EtcdSpec()
    postgres: PostgresSpec = PostgresSpec()
    patroni: PatroniSpec = PatroniSpec()
    load_balancer: LoadBalancerSpec = LoadBalancerSpec()
    drills: Literal["allowed", "forbidden"] = "forbidden"
    failover: FailoverSpec = FailoverSpec()


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
        if isinstance(info.context, dict) and info.context.get(_DEFER_RULES):
            return self  # the loader reports them one by one (parse_text)
        problems = list(cluster_problems(self))
        if problems:
            raise ValueError("; ".join(f"{path}: {reason}" for path, reason in problems))
        return self


# --- resolved values ------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    ttl: int
    loop_wait: int
    retry_timeout: int
    inter: str
    fastinter: str
    downinter: str
    rise: int
    fall: int


def resolve_timing(spec: ClusterSpec) -> Timing:
    profile = PROFILES[spec.profile]
    check = spec.load_balancer.health_check
    pat = spec.patroni

    def pick(value: Any, default: Any) -> Any:
        return default if value is None else value

    return Timing(
        ttl=pick(pat.ttl, profile["ttl"]),
        loop_wait=pick(pat.loop_wait, profile["loop_wait"]),
        retry_timeout=pick(pat.retry_timeout, profile["retry_timeout"]),
        inter=pick(check.inter, profile["check"]["inter"]),
        fastinter=pick(check.fastinter, profile["check"]["fastinter"]),
        downinter=pick(check.downinter, profile["check"]["downinter"]),
        rise=pick(check.rise, profile["check"]["rise"]),
        fall=pick(check.fall, profile["check"]["fall"]),
    )


def duration_ms(text: str) -> int:
    match = re.fullmatch(DURATION_PATTERN, text)
    if not match:
        raise ValueError(f"not a duration: {text!r}")
    number = int(text[: -len(match.group(1))])
    return number if match.group(1) == "ms" else number * 1000


# --- cross-field rules ----------------------------------------------------------------------


def cluster_problems(cluster: Cluster) -> Iterable[tuple[str, str]]:
    """Rules that span fields; each problem is (field path, reason)."""
    spec = cluster.spec
    etcd = spec.etcd
    if etcd.members % 2 == 0:
        yield (
            "spec.etcd.members",
            f"{etcd.members} is even: {etcd.members} members tolerate no more failures than "
            f"{etcd.members - 1} and need a bigger quorum; use an odd number",
        )
    timing = resolve_timing(spec)
    if timing.loop_wait + 2 * timing.retry_timeout > timing.ttl:
        unset = None in (spec.patroni.ttl, spec.patroni.loop_wait, spec.patroni.retry_timeout)
        yield (
            "spec.patroni",
            f"loopWait + 2*retryTimeout must not exceed ttl "
            f"({timing.loop_wait} + 2*{timing.retry_timeout} > {timing.ttl}): otherwise the "
            "leader key can expire while Patroni is still retrying etcd"
            + (f"; unset values come from profile {spec.profile!r}" if unset else ""),
        )
    for field_path, machines, count in (
        ("spec.etcd", etcd.machines, etcd.members),
        ("spec.postgres", spec.postgres.machines, spec.postgres.instances),
        ("spec.loadBalancer", spec.load_balancer.machines, spec.load_balancer.instances),
    ):
        if field_path == "spec.etcd" and etcd.placement == "colocated":
            continue  # reported below
        if machines is not None and len(machines) != count:
            what = "members" if field_path == "spec.etcd" else "instances"
            yield (
                f"{field_path}.machines",
                f"lists {len(machines)} machines but {what} is {count}; they must match",
            )
    if etcd.placement == "colocated":
        if etcd.machines is not None:
            yield (
                "spec.etcd.machines",
                "colocated etcd runs on the PostgreSQL machines; do not list machines",
            )
        if etcd.members > spec.postgres.instances:
            yield (
                "spec.etcd.members",
                f"colocated etcd needs a PostgreSQL machine per member "
                f"({etcd.members} members > {spec.postgres.instances} postgres instances)",
            )
        pg_ports = {
            spec.postgres.port: "spec.postgres.port",
            spec.patroni.rest_api_port: "spec.patroni.restApiPort",
        }
        for port, name in ((etcd.client_port, "clientPort"), (etcd.peer_port, "peerPort")):
            if port in pg_ports:
                yield (
                    f"spec.etcd.{name}",
                    f"port {port} clashes with {pg_ports[port]} on the colocated machines",
                )
    if etcd.client_port == etcd.peer_port:
        yield (
            "spec.etcd.peerPort",
            f"port {etcd.peer_port} is also spec.etcd.clientPort",
        )
    if spec.postgres.port == spec.patroni.rest_api_port:
        yield (
            "spec.patroni.restApiPort",
            f"port {spec.postgres.port} is also spec.postgres.port",
        )
    ports = spec.load_balancer.ports
    seen: dict[int, str] = {}
    for name in ("primary", "replicas", "stats"):
        port = getattr(ports, name)
        if port in seen:
            yield (
                f"spec.loadBalancer.ports.{name}",
                f"port {port} is also the {seen[port]} port",
            )
        seen.setdefault(port, name)
    if duration_ms(timing.fastinter) > duration_ms(timing.inter):
        yield (
            "spec.loadBalancer.healthCheck.fastinter",
            f"{timing.fastinter} must not be longer than inter ({timing.inter})",
        )
    if spec.postgres.synchronous == "strict" and spec.postgres.instances < 2:
        yield (
            "spec.postgres.synchronous",
            "'strict' with a single instance blocks every write (no standby can "
            "confirm); use 'off' or add instances",
        )


def cluster_warnings(cluster: Cluster) -> list[tuple[str, str]]:
    """Accepted but worth a word: (field path, reason)."""
    spec = cluster.spec
    warnings = []
    if spec.etcd.members == 1:
        warnings.append(
            (
                "spec.etcd.members",
                "a single etcd member is a single point of failure; use 3 for production",
            )
        )
    if spec.postgres.synchronous == "on" and spec.postgres.instances < 2:
        warnings.append(
            (
                "spec.postgres.synchronous",
                "'on' with a single instance has no standby to wait for",
            )
        )
    if spec.patroni.source == "debian":
        warnings.append(
            (
                "spec.patroni.source",
                "Debian's patroni package (3.0.2 on Debian 12) is older than the pinned "
                "Patroni the operator is tested with; config files are not pre-validated",
            )
        )
    return warnings


# Fields a live cluster cannot change: machines were created and installed for them.
FIXED_FIELDS: tuple[tuple[str, ...], ...] = (("provider", "type"), ("patroni", "source"))


def fixed_field_changes(accepted: Cluster, new: Cluster) -> list[tuple[str, str]]:
    """(field path, reason) for every creation-time field `new` changes against `accepted`."""
    changes = []
    for path in FIXED_FIELDS:
        old_value: Any = accepted.spec
        new_value: Any = new.spec
        for name in path:
            old_value, new_value = getattr(old_value, name), getattr(new_value, name)
        if old_value != new_value:
            yaml_path = "spec." + ".".join(to_camel(n) for n in path)
            changes.append(
                (
                    yaml_path,
                    f"is {old_value!r} on the running cluster and cannot change to "
                    f"{new_value!r}; put it back, or destroy the cluster and create it again",
                )
            )
    return changes


# --- loading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """Why a manifest was refused. `path` is the field path as written in the YAML."""

    file: str
    path: str
    reason: str
    line: int | None = None
    document: int | None = None  # 1-based, set when the file holds several documents

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        if self.document:
            where += f" [document {self.document}]"
        return f"{where}: {self.path}: {self.reason}" if self.path else f"{where}: {self.reason}"


class ManifestError(Exception):
    """A manifest was refused; nothing was touched. Carries every problem found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class LoadedCluster:
    cluster: Cluster
    source: str
    warnings: tuple[str, ...] = field(default_factory=tuple)
    line: int | None = None  # line of metadata.name in source


def manifest_files(path: str | Path) -> list[Path]:
    """A file, or every *.yaml / *.yml file of a directory (sorted, not recursive,
    hidden files skipped). Raises OSError when a directory cannot be listed."""
    p = Path(path)
    if p.is_dir():
        return sorted(
            f
            for f in p.iterdir()
            if f.suffix in (".yaml", ".yml") and not f.name.startswith(".") and f.is_file()
        )
    return [p]


def load(paths: Sequence[str | Path] | str | Path) -> list[LoadedCluster]:
    """Load and validate every cluster in the given files/directories, or raise ManifestError."""
    if isinstance(paths, str | Path):
        paths = [paths]
    problems: list[Problem] = []
    loaded: list[LoadedCluster] = []
    for given in paths:
        try:
            files = manifest_files(given)
        except OSError as exc:
            problems.append(Problem(str(given), "", f"cannot list directory: {_os_reason(exc)}"))
            continue
        if not files:
            problems.append(Problem(str(given), "", "no *.yaml manifest in this directory"))
        for f in files:
            try:
                text = f.read_text(encoding="utf-8")
            except OSError as exc:
                problems.append(Problem(str(f), "", f"cannot read: {_os_reason(exc)}"))
                continue
            except UnicodeDecodeError as exc:
                problems.append(Problem(str(f), "", f"not UTF-8 text (byte {exc.start})"))
                continue
            got, found = parse_text(text, str(f))
            loaded.extend(got)
            problems.extend(found)
    by_name: dict[str, LoadedCluster] = {}
    for item in loaded:
        first = by_name.setdefault(item.cluster.name, item)
        if first is not item:
            where = f"{first.source}:{first.line}" if first.line else first.source
            problems.append(
                Problem(
                    item.source,
                    "metadata.name",
                    f"cluster {item.cluster.name!r} is also defined in {where}",
                    item.line,
                )
            )
    if not loaded and not problems:
        problems.append(
            Problem(", ".join(str(p) for p in paths) or "(no path)", "", "defines no cluster")
        )
    if problems:
        raise ManifestError(problems)
    return loaded


def _os_reason(exc: OSError) -> str:
    return exc.strerror.lower() if exc.strerror else str(exc)


def parse_text(text: str, source: str) -> tuple[list[LoadedCluster], list[Problem]]:
    """Parse every YAML document of one file; returns the clusters and the problems."""
    try:
        pairs = _compose_and_construct(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        reason = f"YAML syntax error: {exc.problem or exc.context or 'unreadable YAML'}"
        if exc.problem and exc.context and exc.context_mark and exc.problem_mark:
            reason += f" ({exc.context} started on line {exc.context_mark.line + 1})"
        return [], [Problem(source, "", reason, line)]
    except yaml.YAMLError as exc:
        return [], [Problem(source, "", f"YAML error: {exc}")]
    loaded: list[LoadedCluster] = []
    problems: list[Problem] = []
    names: dict[str, int | None] = {}
    several = len(pairs) > 1
    for index, (node, doc) in enumerate(pairs):
        if doc is None:
            continue
        document = index + 1 if several else None

        def problem(path: str, reason: str, node: yaml.Node = node, document=document) -> Problem:
            return Problem(source, path, reason, _line_of(node, _split(path)), document)

        if not isinstance(doc, dict):
            problems.append(
                problem("", f"a manifest must be a mapping (apiVersion, kind, …), got {_show(doc)}")
            )
            continue
        found = [problem(p, r) for p, r in _duplicate_keys(node)]
        try:
            cluster = Cluster.model_validate(
                doc, by_alias=True, by_name=False, context={_DEFER_RULES: True}
            )
        except ValidationError as exc:
            problems.extend(found)
            problems.extend(problem(p, r) for p, r in _problems_from(exc))
            continue
        found.extend(problem(p, r) for p, r in cluster_problems(cluster))
        found.extend(problem(p, r) for p, r in _topology_problems(cluster))
        name_line = _line_of(node, ["metadata", "name"])
        if cluster.name in names:
            first = names[cluster.name]
            found.append(
                problem(
                    "metadata.name",
                    f"cluster {cluster.name!r} is also defined in this file"
                    + (f" (line {first})" if first else ""),
                )
            )
        names.setdefault(cluster.name, name_line)
        if found:
            problems.extend(found)
            continue
        warnings = tuple(
            f"{source}: {path}: {reason}" for path, reason in cluster_warnings(cluster)
        )
        loaded.append(LoadedCluster(cluster, source, warnings, name_line))
    return loaded, problems


def _compose_and_construct(text: str) -> list[tuple[yaml.Node, Any]]:
    """Every document as (node, data): nodes carry the lines, data is what safe_load gives."""
    loader = yaml.SafeLoader(text)
    try:
        pairs = []
        while loader.check_node():
            node = loader.get_node()
            pairs.append((node, loader.construct_document(node)))
        return pairs
    finally:
        loader.dispose()


def _duplicate_keys(node: yaml.Node, path: tuple[str, ...] = ()) -> Iterator[tuple[str, str]]:
    """YAML silently keeps the last of two equal keys; a manifest must not rely on that."""
    seen_nodes: set[int] = set()

    def walk(n: yaml.Node, where: tuple[str, ...]) -> Iterator[tuple[str, str]]:
        if id(n) in seen_nodes:
            return
        seen_nodes.add(id(n))
        if isinstance(n, yaml.MappingNode):
            first: dict[str, int] = {}
            for key, value in n.value:
                k = str(key.value)
                if key.tag == "tag:yaml.org,2002:merge":
                    continue
                if k in first:
                    yield (
                        ".".join((*where, k)),
                        f"duplicate key {k!r} (first on line {first[k]}); "
                        "YAML would silently keep only the last one",
                    )
                first.setdefault(k, key.start_mark.line + 1)
                yield from walk(value, (*where, k))
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                yield from walk(item, (*where, str(i)))

    return walk(node, path)


def _topology_problems(cluster: Cluster) -> list[tuple[str, str]]:
    # Imported here: topology depends on spec's models.
    from pgha_operator.core.topology import topology_problems

    return topology_problems(cluster)


# --- turning pydantic errors into problems -------------------------------------------------

PATTERN_REASONS = {
    NAME_PATTERN: "is not a valid name: lowercase letters, digits and '-', starting with a "
    "letter, not ending with '-', at most 32 characters",
    DURATION_PATTERN: "is not a duration: write a whole number with ms or s, e.g. 500ms or 3s",
    NAMESPACE_PATTERN: "is not a valid namespace: write it like /service/ (a leading and a "
    "trailing '/')",
    HBA_TOKEN_PATTERN: "must be one word: no spaces or '#' (separate several with commas)",
}

# Extra words for bounds, by field path (list indexes removed) and error type.
BOUND_HINTS = {
    ("spec.patroni.ttl", "greater_than_equal"): "Patroni's floor; below it Patroni "
    "silently uses 20",
    ("spec.patroni.loopWait", "greater_than_equal"): "Patroni's floor",
    ("spec.patroni.retryTimeout", "greater_than_equal"): "Patroni's floor",
    ("spec.etcd.members", "greater_than_equal"): "the DCS needs a member; use 3 for production",
    ("spec.etcd.members", "less_than_equal"): "every etcd write waits for a quorum; more "
    "members only slow it down",
    ("spec.postgres.instances", "greater_than_equal"): "a cluster needs a PostgreSQL node",
    ("spec.postgres.instances", "less_than_equal"): "derived addresses .11-.99 must stay "
    "below the etcd block (.101-)",
    ("spec.loadBalancer.instances", "greater_than_equal"): "clients connect through HAProxy",
}


def _problems_from(exc: ValidationError) -> list[tuple[str, str]]:
    problems = []
    for err in exc.errors():
        path, reason = _reason(err, [str(x) for x in err["loc"]])
        if (path, reason) not in problems:
            problems.append((path, reason))
    return problems


def _yaml_path(loc: Sequence[Any]) -> list[str]:
    """pydantic's location as the YAML reads: aliases, list indexes, no union tags."""
    out: list[str] = []
    for part in loc:
        text = str(part)
        if out and out[-1] == "provider" and text in PROVIDER_TYPES:
            continue  # the discriminator tag pydantic inserts
        if text.startswith("function-"):
            continue
        out.append(text)
    return out


def _reason(err: Any, loc: list[str]) -> tuple[str, str]:
    parts = _yaml_path(loc)
    kind = err["type"]
    ctx = err.get("ctx") or {}
    value = err.get("input")
    path = ".".join(parts)
    shown = _show(value)
    if kind == "extra_forbidden":
        return path, f"unknown field {parts[-1]!r}" + _suggest(loc)
    if kind == "missing":
        return path, "is required"
    if kind == "union_tag_invalid":
        expected = ", ".join(PROVIDER_TYPES)
        return (
            f"{path}.type",
            f"unknown provider type {ctx.get('tag')!r}; expected one of {expected}",
        )
    if kind == "union_tag_not_found":
        return f"{path}.type", f"is required: one of {', '.join(PROVIDER_TYPES)}"
    if kind in ("managed_parameter", "parameter_value"):
        return f"{path}.{ctx['key']}", err["msg"].removeprefix(f"{ctx['key']}: ")
    if kind == "literal_error":
        expected = ctx.get("expected", "")
        if parts[-1] == "method" and value == "trust":
            return (
                path,
                "'trust' is not allowed: every connection must authenticate (use scram-sha-256)",
            )
        if parts == ["apiVersion"]:
            return path, f"{shown} is not supported; this operator reads apiVersion: {API_VERSION}"
        if parts == ["kind"]:
            return path, f"{shown} is not a kind this operator reads; expected kind: {KIND}"
        reason = f"{shown} is not one of {expected}"
        if isinstance(value, bool):
            reason += '; YAML reads unquoted on/off/yes/no as true/false: quote it, e.g. "off"'
        return path, reason
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        bound = ctx.get("ge", ctx.get("gt")) if kind.startswith("greater") else None
        if bound is not None:
            reason = f"{shown} is too small: the minimum is {bound}"
        else:
            reason = f"{shown} is too large: the maximum is {ctx.get('le', ctx.get('lt'))}"
        hint = BOUND_HINTS.get((".".join(p for p in parts if not p.isdigit()), kind))
        return path, f"{reason} ({hint})" if hint else reason
    if kind in ("int_type", "int_parsing", "int_from_float"):
        unquote = isinstance(value, str) and value.strip().isdigit()
        return path, f"expected a whole number, got {shown}" + (
            "; write it without quotes" if unquote else ""
        )
    if kind in ("string_type", "str_type"):
        return path, f"expected text, got {shown}"
    if kind in ("bool_type", "bool_parsing"):
        return path, f"expected true or false, got {shown}"
    if kind in ("dict_type", "model_type", "model_attributes_type", "mapping_type"):
        return path, f"expected a mapping (key: value), got {shown}"
    if kind in ("list_type", "tuple_type"):
        return path, f"expected a list, got {shown}"
    if kind == "string_pattern_mismatch":
        why = PATTERN_REASONS.get(ctx.get("pattern", ""))
        return path, f"{shown} {why}" if why else err["msg"]
    if kind == "ip_v4_network":
        reason = f"{shown} is not an IPv4 network in CIDR form (e.g. 10.0.0.0/24)"
        try:
            loose = IPv4Network(str(value), strict=False)
        except ValueError:
            return path, reason
        return path, f"{shown} has host bits set; did you mean {loose}?"
    if kind == "ip_v4_address":
        return path, f"{shown} is not an IPv4 address"
    return path, err["msg"].removeprefix("Value error, ")


def _show(value: Any) -> str:
    """A value as a DBA wrote it in YAML."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return str(value)


def _suggest(loc: list[str]) -> str:
    model = _model_at(loc[:-1])
    if model is None:
        return ""
    known = [f.alias or name for name, f in model.model_fields.items()]
    key = loc[-1]
    if to_camel(key) in known:
        return f"; did you mean {to_camel(key)!r}? (manifests use camelCase)"
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; expected one of {', '.join(known)}"


def _model_at(loc: Sequence[str]) -> type[BaseModel] | None:
    """The model that the mapping at this pydantic location is validated against."""
    model: type[BaseModel] | None = Cluster
    for i, part in enumerate(loc):
        if part.isdigit():
            continue
        if i > 0 and loc[i - 1] == "provider" and part in PROVIDER_TYPES:
            model = PROVIDER_TYPES[part]  # the discriminator tag pydantic inserts
            continue
        if model is None:
            return None
        info = next((f for n, f in model.model_fields.items() if (f.alias or n) == part), None)
        if info is None:
            return None
        model = _inner_model(info.annotation)
    return model


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is Annotated:
        return _inner_model(args[0])
    models = [m for m in (_inner_model(a) for a in args) if m is not None]
    return models[0] if len(models) == 1 else None


def _split(path: str) -> list[str]:
    return path.split(".") if path else []


def _line_of(node: yaml.Node | None, path: Sequence[str]) -> int | None:
    """The 1-based line of a field path in the composed YAML, as deep as it exists."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in path:
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in reversed(node.value) if str(k.value) == part), None)
            if pair is None:
                break
            line = pair[0].start_mark.line + 1
            node = pair[1]
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            node = node.value[int(part)]
            line = node.start_mark.line + 1
        else:
            break
    return line
