"""Spec + machine layouts + secrets -> the Desired value that `plan` compares against (pure).

Rendering is the costly part of a cycle (patroni.yml lists every node, so all the files of
n nodes hold O(n^2) text) while its inputs rarely change. `build_desired` is therefore
memoised by content: the same spec, layouts, secrets, binaries, user and service manager
give back the very same (frozen) Desired and RenderContext, with no rendering at all.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Literal

from pgha_operator.core import topology
from pgha_operator.core.actions import Action
from pgha_operator.core.render import (
    Binaries,
    DesiredFile,
    RenderContext,
    Secrets,
    dynamic_config,
    render_all,
    service_definitions,
)
from pgha_operator.core.spec import Cluster
from pgha_operator.core.tls import TlsMaterial, placeholder_material
from pgha_operator.core.topology import Layout, Topology


@dataclass(frozen=True)
class Desired:
    cluster: Cluster
    topology: Topology
    files: tuple[DesiredFile, ...]
    services: Mapping[str, tuple[str, ...]]  # machine -> services, in start order
    # what Patroni should hold in the DCS (compared with GET /config, changed by PATCH)
    dynamic_config: Mapping[str, Any] = field(default_factory=dict)
    etcd_data_dirs: Mapping[str, str] = field(default_factory=dict)  # etcd machine -> data dir


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    decision: str  # one human-readable line: logged, shown by status
    blocked: str | None = None  # a condition reason that stops all changes (TwoPrimaries)

    @property
    def empty(self) -> bool:
        return not self.actions


def content_hash(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()


# Desired values kept: the operator needs one; tests and `render` of several clusters a few.
CACHE_SIZE = 8


def build_desired(
    cluster: Cluster,
    layouts: Mapping[str, Layout] | None,
    secrets: Secrets,
    binaries: Binaries,
    service_user: str | None,
    service_manager: Literal["local", "systemd"],
    tls: TlsMaterial | None = None,
) -> tuple[Desired, RenderContext]:
    """`layouts=None` means real machines (the FHS layout on every machine); `tls=None`
    places placeholders where the certificates go (render and plan before the first apply).

    The result is shared between callers with the same inputs: treat it as read-only."""
    if tls is None:
        tls = placeholder_material(tuple(m.name for m in topology.build(cluster).machines))
    inputs = _Inputs(
        desired_key(cluster, layouts, secrets, binaries, service_user, service_manager, tls),
        cluster,
        layouts,
        secrets,
        binaries,
        service_user,
        service_manager,
        tls,
    )
    return _build_cached(inputs)


def desired_key(
    cluster: Cluster,
    layouts: Mapping[str, Layout] | None,
    secrets: Secrets,
    binaries: Binaries,
    service_user: str | None,
    service_manager: str,
    tls: TlsMaterial,
) -> str:
    """A digest of everything rendering reads: equal keys render equal files."""
    canonical = {
        "spec": cluster.model_dump(mode="json", by_alias=True),
        "layouts": None if layouts is None else {n: vars(lay) for n, lay in layouts.items()},
        "secrets": asdict(secrets),
        "binaries": asdict(binaries),
        "service_user": service_user,
        "service_manager": service_manager,
        "tls": asdict(tls),
    }
    return content_hash(json.dumps(canonical, sort_keys=True, separators=(",", ":")))


def clear_desired_cache() -> None:
    _build_cached.cache_clear()


@dataclass(frozen=True)
class _Inputs:
    """build_desired's arguments, equal and hashed by their digest alone."""

    key: str
    cluster: Cluster = field(compare=False)
    layouts: Mapping[str, Layout] | None = field(compare=False)
    secrets: Secrets = field(compare=False, repr=False)
    binaries: Binaries = field(compare=False)
    service_user: str | None = field(compare=False)
    service_manager: Literal["local", "systemd"] = field(compare=False)
    tls: TlsMaterial = field(compare=False, repr=False)


@lru_cache(maxsize=CACHE_SIZE)
def _build_cached(inputs: _Inputs) -> tuple[Desired, RenderContext]:
    return _build(
        inputs.cluster,
        inputs.layouts,
        inputs.secrets,
        inputs.binaries,
        inputs.service_user,
        inputs.service_manager,
        inputs.tls,
    )


def _build(
    cluster: Cluster,
    layouts: Mapping[str, Layout] | None,
    secrets: Secrets,
    binaries: Binaries,
    service_user: str | None,
    service_manager: Literal["local", "systemd"],
    tls: TlsMaterial,
) -> tuple[Desired, RenderContext]:
    topo = topology.build(cluster)
    if layouts is None:
        layouts = {m.name: topology.layout("/", cluster.name) for m in topo.machines}
    # Read-only views of our own copies: the cached value is shared and must not change.
    layouts = MappingProxyType(dict(layouts))
    ctx = RenderContext(
        cluster=cluster,
        topology=topo,
        layouts=layouts,
        secrets=secrets,
        tls=tls,
        binaries=binaries,
        service_user=service_user,
        service_manager=service_manager,
    )
    desired = Desired(
        cluster=cluster,
        topology=topo,
        files=render_all(ctx),
        services=MappingProxyType(
            {m.name: tuple(d.name for d in service_definitions(ctx, m.name)) for m in topo.machines}
        ),
        dynamic_config=dynamic_config(ctx),
        etcd_data_dirs=MappingProxyType({name: layouts[name].etcd_data for name in topo.etcd}),
    )
    return desired, ctx


# Shown instead of passwords where no state dir holds generated ones yet (render, plan).
PLACEHOLDER_SECRETS = Secrets(
    superuser_password="generated-on-first-apply",
    replication_password="generated-on-first-apply",
    admin_password="generated-on-first-apply",
    rest_password="generated-on-first-apply",
    app_password="generated-on-first-apply",
    stats_password="generated-on-first-apply",
    pooler_password="generated-on-first-apply",
)
