"""Where machines come from: pick the provider a manifest names."""

from __future__ import annotations

from pathlib import Path

from pgha_operator.core.errors import PermanentError
from pgha_operator.core.spec import Cluster
from pgha_operator.core.topology import Topology
from pgha_operator.shell.providers.base import Provider


def make_provider(cluster: Cluster, state_dir: Path, topo: Topology | None = None) -> Provider:
    """The cluster's provider; `topo` is the controller's topology of `cluster` (built once)."""
    kind = cluster.spec.provider.type
    if kind == "local":
        from pgha_operator.shell.providers import local

        binaries = local.find_binaries(cluster.spec.patroni.source)
        return local.LocalProvider(state_dir, local.service_user(), binaries)
    if kind == "nspawn":
        from pgha_operator.shell.providers.nspawn import NspawnProvider

        return NspawnProvider(cluster, state_dir, topo)
    if kind == "vagrant":
        from pgha_operator.shell.providers.vagrant import VagrantProvider

        return VagrantProvider(cluster, state_dir, topo=topo)
    if kind == "ssh":
        from pgha_operator.shell.providers.fence_agent import FencedSshProvider
        from pgha_operator.shell.providers.ssh import SshProvider

        spec = cluster.spec.provider
        port = spec.port if spec.type == "ssh" else 22
        kind_ = FencedSshProvider if cluster.spec.failover.fence_agent else SshProvider
        return kind_(cluster, state_dir, port=port, topo=topo)
    raise PermanentError(f"unknown provider {kind!r}")
