"""Desired state: the manifest models (pydantic v2) and their loading.

Pure: parsing text into validated, frozen models. Reading the manifest files is the only
I/O here, and it happens before anything on a cluster is touched.

Every refusal is a `Problem`: the file, the field path as written in the YAML
(`spec.etcd.members`), a reason a DBA can act on and, when known, the line.

Modules: `models` (the manifest's shape), `rules` (cross-field rules, warnings, fixed
fields), `timing` (profiles, resolved timing), `loading` (files and YAML documents to
clusters), `wording` (pydantic errors as reasons), `yaml_nodes` (lines and duplicate keys),
`problems` (`Problem`, `ManifestError`), `patterns` (field patterns and their wording),
`parameters` (postgresql.conf names and values), `pg15_settings` (PostgreSQL 15's settings).
"""

from pgha_operator.core.spec.loading import LoadedCluster, load, manifest_files, parse_text
from pgha_operator.core.spec.models import (
    API_VERSION,
    KIND,
    LOOPBACK,
    PROVIDER_TYPES,
    BroughtCa,
    Cluster,
    ClusterSpec,
    Duration,
    EtcdSpec,
    FailoverSpec,
    HbaRule,
    HealthCheck,
    LoadBalancerSpec,
    LocalProviderSpec,
    MachineRef,
    Metadata,
    Model,
    NspawnProviderSpec,
    PatroniSpec,
    PoolerSpec,
    Ports,
    PostgresSpec,
    ProviderSpec,
    SshProviderSpec,
    TlsSpec,
    VagrantProviderSpec,
    VipSpec,
)
from pgha_operator.core.spec.parameters import (
    MANAGED_PARAMETERS,
    PARAMETER_NAME,
    ParameterValue,
    managed_reason,
)
from pgha_operator.core.spec.patterns import (
    DURATION_PATTERN,
    HBA_TOKEN_PATTERN,
    NAME_PATTERN,
    NAMESPACE_PATTERN,
    PATTERN_REASONS,
)
from pgha_operator.core.spec.problems import ManifestError, Problem
from pgha_operator.core.spec.rules import (
    FIXED_FIELDS,
    cluster_problems,
    cluster_warnings,
    fixed_field_changes,
)
from pgha_operator.core.spec.timing import PROFILES, Timing, duration_ms, resolve_timing
from pgha_operator.core.spec.wording import BOUND_HINTS

__all__ = [
    "API_VERSION",
    "BOUND_HINTS",
    "BroughtCa",
    "TlsSpec",
    "VipSpec",
    "DURATION_PATTERN",
    "FIXED_FIELDS",
    "HBA_TOKEN_PATTERN",
    "KIND",
    "LOOPBACK",
    "MANAGED_PARAMETERS",
    "NAMESPACE_PATTERN",
    "NAME_PATTERN",
    "PARAMETER_NAME",
    "PATTERN_REASONS",
    "PROFILES",
    "PROVIDER_TYPES",
    "Cluster",
    "ClusterSpec",
    "Duration",
    "EtcdSpec",
    "FailoverSpec",
    "HbaRule",
    "HealthCheck",
    "LoadBalancerSpec",
    "LoadedCluster",
    "LocalProviderSpec",
    "MachineRef",
    "ManifestError",
    "Metadata",
    "Model",
    "NspawnProviderSpec",
    "ParameterValue",
    "PatroniSpec",
    "PoolerSpec",
    "Ports",
    "PostgresSpec",
    "Problem",
    "ProviderSpec",
    "SshProviderSpec",
    "Timing",
    "VagrantProviderSpec",
    "cluster_problems",
    "cluster_warnings",
    "duration_ms",
    "fixed_field_changes",
    "load",
    "managed_reason",
    "manifest_files",
    "parse_text",
    "resolve_timing",
]
