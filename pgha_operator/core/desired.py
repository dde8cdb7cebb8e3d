"""Spec + machine layouts + secrets -> the Desired value that `plan` compares against (pure)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
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


def build_desired(
    cluster: Cluster,
    layouts: Mapping[str, Layout] | None,
    secrets: Secrets,
    binaries: Binaries,
    service_user: str | None,
    service_manager: Literal["local", "systemd"],
) -> tuple[Desired, RenderContext]:
    """`layouts=None` means real machines (the FHS layout on every machine)."""
    topo = topology.build(cluster)
    if layouts is None:
        layouts = {m.name: topology.layout("/", cluster.name) for m in topo.machines}
    ctx = RenderContext(
        cluster=cluster,
        topology=topo,
        layouts=layouts,
        secrets=secrets,
        binaries=binaries,
        service_user=service_user,
        service_manager=service_manager,
    )
    desired = Desired(
        cluster=cluster,
        topology=topo,
        files=render_all(ctx),
        services={
            m.name: tuple(d.name for d in service_definitions(ctx, m.name)) for m in topo.machines
        },
        dynamic_config=dynamic_config(ctx),
        etcd_data_dirs={name: layouts[name].etcd_data for name in topo.etcd},
    )
    return desired, ctx


# Shown instead of passwords where no state dir holds generated ones yet (render, plan).
PLACEHOLDER_SECRETS = Secrets(
    superuser_password="generated-on-first-apply",
    replication_password="generated-on-first-apply",
    admin_password="generated-on-first-apply",
    rest_password="generated-on-first-apply",
)
