"""Desired state: the manifest models (pydantic v2) and their loading.

Pure: parsing text into validated, frozen models. Reading the files is the only
I/O here, and it happens before anything on a cluster is touched.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

API_VERSION = "pgha/v1"
KIND = "Cluster"

NAME_PATTERN = r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$|^[a-z]$"
DURATION_PATTERN = r"^[0-9]+(ms|s)$"


class Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True
    )


# --- providers --------------------------------------------------------------------------


class LocalProvider(Model):
    """Machines are directories on this host, each with its own loopback address."""

    type: Literal["local"]
    network: IPv4Network = IPv4Network("127.0.10.0/24")


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
    memory: Annotated[int, Field(ge=512)] = 1024
    cpus: Annotated[int, Field(ge=1)] = 1


class SshProvider(Model):
    """Existing hosts reached over SSH; the operator never creates or destroys them."""

    type: Literal["ssh"]
    network: IPv4Network | None = None
    user: str = "root"
    key_file: str
    known_hosts: str


Provider = Annotated[
    LocalProvider | NspawnProvider | VagrantProvider | SshProvider, Field(discriminator="type")
]

# --- components ---------------------------------------------------------------------------


class MachineRef(Model):
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    address: IPv4Address


class EtcdSpec(Model):
    members: Annotated[int, Field(ge=1, le=9)] = 3
    placement: Literal["dedicated", "colocated"] = "dedicated"
    machines: list[MachineRef] | None = None
    client_port: Annotated[int, Field(ge=1, le=65535)] = 2379
    peer_port: Annotated[int, Field(ge=1, le=65535)] = 2380


ParameterValue = str | int | float | bool


class HbaRule(Model):
    """One pg_hba line. `trust` is not offered: every connection authenticates."""

    type: Literal["host", "hostssl", "hostnossl", "local"] = "host"
    database: str = "all"
    user: str = "all"
    address: IPv4Network | None = None
    method: Literal["scram-sha-256", "peer", "reject", "cert"] = "scram-sha-256"

    @model_validator(mode="after")
    def _address_matches_type(self) -> HbaRule:
        if self.type == "local" and self.address is not None:
            raise ValueError("a 'local' rule takes no address")
        if self.type != "local" and self.address is None:
            raise ValueError(f"a '{self.type}' rule needs an address (CIDR)")
        if self.method == "peer" and self.type != "local":
            raise ValueError("'peer' works only on 'local' rules")
        return self


class PostgresSpec(Model):
    version: Literal[15] = 15
    instances: Annotated[int, Field(ge=1, le=89)] = 3
    machines: list[MachineRef] | None = None
    port: Annotated[int, Field(ge=1, le=65535)] = 5432
    parameters: dict[str, ParameterValue] = Field(default_factory=dict)
    hba: list[HbaRule] = Field(default_factory=list)
    synchronous: Literal["off", "on", "strict"] = "off"


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
            "inter": "1s",
            "fastinter": "250ms",
            "downinter": "500ms",
            "rise": 1,
            "fall": 2,
        },
    },
}


class PatroniSpec(Model):
    """Patroni's timing; unset values come from the cluster's profile."""

    ttl: Annotated[int, Field(ge=20)] | None = None
    loop_wait: Annotated[int, Field(ge=1)] | None = None
    retry_timeout: Annotated[int, Field(ge=3)] | None = None
    maximum_lag_on_failover: Annotated[int, Field(ge=0)] = 1048576
    rest_api_port: Annotated[int, Field(ge=1, le=65535)] = 8008
    namespace: Annotated[str, Field(pattern=r"^/([A-Za-z0-9_.-]+/)*$")] = "/service/"


class Ports(Model):
    primary: Annotated[int, Field(ge=1, le=65535)] = 5000
    replicas: Annotated[int, Field(ge=1, le=65535)] = 5001
    stats: Annotated[int, Field(ge=1, le=65535)] = 7000


Duration = Annotated[str, Field(pattern=DURATION_PATTERN)]


class HealthCheck(Model):
    """HAProxy server check timing; unset values come from the cluster's profile."""

    inter: Duration | None = None
    fastinter: Duration | None = None
    downinter: Duration | None = None
    rise: Annotated[int, Field(ge=1)] | None = None
    fall: Annotated[int, Field(ge=1)] | None = None


class LoadBalancerSpec(Model):
    instances: Annotated[int, Field(ge=1, le=50)] = 1
    machines: list[MachineRef] | None = None
    ports: Ports = Ports()
    health_check: HealthCheck = HealthCheck()
    maxconn: Annotated[int, Field(ge=1)] = 200


class ClusterSpec(Model):
    provider: Provider
    profile: Literal["fast", "seed"] = "fast"
    etcd: EtcdSpec = EtcdSpec()
    postgres: PostgresSpec = PostgresSpec()
    patroni: PatroniSpec = PatroniSpec()
    load_balancer: LoadBalancerSpec = LoadBalancerSpec()
    drills: Literal["allowed", "forbidden"] = "forbidden"


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
    def _checks(self) -> Cluster:
        problems = list(cluster_problems(self))
        if problems:
            # pydantic reports one message per validator; join them with their paths.
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
            f"{etcd.members} is even: an even etcd cluster tolerates no more failures than "
            f"{etcd.members - 1} members and needs a bigger quorum; use an odd number",
        )
    timing = resolve_timing(spec)
    if timing.loop_wait + 2 * timing.retry_timeout > timing.ttl:
        yield (
            "spec.patroni",
            f"loopWait + 2*retryTimeout must not exceed ttl "
            f"({timing.loop_wait} + 2*{timing.retry_timeout} > {timing.ttl})",
        )
    for field_path, machines, count in (
        ("spec.etcd", etcd.machines, etcd.members),
        ("spec.postgres", spec.postgres.machines, spec.postgres.instances),
        ("spec.loadBalancer", spec.load_balancer.machines, spec.load_balancer.instances),
    ):
        if machines is not None and len(machines) != count:
            what = "members" if field_path == "spec.etcd" else "instances"
            yield (
                f"{field_path}.machines",
                f"lists {len(machines)} machines but {what} is {count}",
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
                f"({etcd.members} > {spec.postgres.instances} instances)",
            )
        pg_ports = {spec.postgres.port: "postgres.port", spec.patroni.rest_api_port: "restApiPort"}
        for port, name in ((etcd.client_port, "clientPort"), (etcd.peer_port, "peerPort")):
            if port in pg_ports:
                yield (
                    f"spec.etcd.{name}",
                    f"port {port} clashes with {pg_ports[port]} on the colocated machines",
                )
    if etcd.client_port == etcd.peer_port:
        yield ("spec.etcd.peerPort", f"port {etcd.peer_port} is also the client port")
    if spec.postgres.port == spec.patroni.rest_api_port:
        yield ("spec.patroni.restApiPort", f"port {spec.postgres.port} is also postgres.port")
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
        yield ("spec.loadBalancer.healthCheck.fastinter", "must not be longer than inter")


# --- loading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    file: str
    path: str
    reason: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
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


def manifest_files(path: str | Path) -> list[Path]:
    """A file, or every *.yaml / *.yml file of a directory (sorted, not recursive)."""
    p = Path(path)
    if p.is_dir():
        return sorted(f for f in p.iterdir() if f.suffix in (".yaml", ".yml") and f.is_file())
    return [p]


def load(paths: Sequence[str | Path]) -> list[LoadedCluster]:
    """Load and validate every cluster in the given files/directories, or raise ManifestError."""
    problems: list[Problem] = []
    loaded: list[LoadedCluster] = []
    for given in paths:
        files = manifest_files(given)
        if not files:
            problems.append(Problem(str(given), "", "no *.yaml manifest in this directory"))
        for f in files:
            try:
                text = f.read_text()
            except OSError as exc:
                problems.append(Problem(str(f), "", f"cannot read: {exc.strerror or exc}"))
                continue
            got, found = parse_text(text, str(f))
            loaded.extend(got)
            problems.extend(found)
    by_name: dict[str, str] = {}
    for item in loaded:
        if item.cluster.name in by_name:
            problems.append(
                Problem(
                    item.source,
                    "metadata.name",
                    f"cluster {item.cluster.name!r} is also defined in {by_name[item.cluster.name]}",
                )
            )
        by_name.setdefault(item.cluster.name, item.source)
    if problems:
        raise ManifestError(problems)
    return loaded


def parse_text(text: str, source: str) -> tuple[list[LoadedCluster], list[Problem]]:
    """Parse every YAML document of one file; returns the clusters and the problems."""
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
        documents = list(yaml.safe_load_all(text))
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        return [], [Problem(source, "", f"YAML syntax error: {exc.problem}", line)]
    except yaml.YAMLError as exc:
        return [], [Problem(source, "", f"YAML error: {exc}")]
    loaded: list[LoadedCluster] = []
    problems: list[Problem] = []
    for index, (node, doc) in enumerate(zip(nodes, documents, strict=True)):
        if doc is None:
            continue
        prefix = f"[document {index + 1}] " if len(documents) > 1 else ""
        if not isinstance(doc, dict):
            problems.append(Problem(source, "", f"{prefix}a manifest must be a mapping"))
            continue
        try:
            cluster = Cluster.model_validate(doc)
        except ValidationError as exc:
            problems.extend(_problems_from(exc, source, node, prefix))
            continue
        topo_problems = _topology_problems(cluster)
        if topo_problems:
            problems.extend(
                Problem(source, prefix + p, r, _line_of(node, p.split(".")))
                for p, r in topo_problems
            )
            continue
        warnings = []
        if cluster.spec.etcd.members == 1:
            warnings.append(
                f"{source}: spec.etcd.members: a single etcd member is a single point of "
                "failure; use 3 for production"
            )
        loaded.append(LoadedCluster(cluster, source, tuple(warnings)))
    return loaded, problems


def _topology_problems(cluster: Cluster) -> list[tuple[str, str]]:
    # Imported here: topology depends on spec's models.
    from pgha_operator.topology import topology_problems

    return topology_problems(cluster)


def _problems_from(
    exc: ValidationError, source: str, node: yaml.Node, prefix: str
) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = [str(x) for x in err["loc"]]
        # Drop pydantic's union tags (e.g. 'local') so the path reads as the YAML does.
        loc = [part for part in loc if not part.startswith("function-")]
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown field {loc[-1]!r}"
        elif err["type"] == "union_tag_invalid":
            msg = f"unknown provider type (expected one of local, nspawn, vagrant, ssh): {msg}"
        path = ".".join(_camel_path(loc))
        if err["type"] == "value_error" and not loc:
            # Cross-field rules come joined as "path: reason; path: reason".
            for part in msg.split("; "):
                p, _, reason = part.partition(": ")
                problems.append(Problem(source, prefix + p, reason, _line_of(node, p.split("."))))
            continue
        problems.append(Problem(source, prefix + path, msg, _line_of(node, path.split("."))))
    return problems


def _camel_path(loc: list[str]) -> list[str]:
    out = []
    for part in loc:
        if part in ("local", "nspawn", "vagrant", "ssh") and out and out[-1] == "provider":
            continue  # the discriminator tag pydantic inserts
        out.append(to_camel(part) if not part.isdigit() else part)
    return out


def _line_of(node: yaml.Node | None, path: Sequence[str]) -> int | None:
    """The 1-based line of a field path in the composed YAML, as deep as it exists."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in path:
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if str(k.value) == part), None)
            key = next((k for k, v in node.value if str(k.value) == part), None)
            if key is None:
                break
            line = key.start_mark.line + 1
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            node = node.value[int(part)]
            line = node.start_mark.line + 1
        else:
            break
    return line
