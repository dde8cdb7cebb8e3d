"""Spec + machine layouts + secrets -> the Desired value that `plan` compares against (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pgha_operator import topology
from pgha_operator.plan import Desired
from pgha_operator.render import Binaries, RenderContext, Secrets, render_all, service_definitions
from pgha_operator.spec import Cluster
from pgha_operator.topology import Layout


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
    )
    return desired, ctx


# Shown instead of passwords where no state dir holds generated ones yet (render, plan).
PLACEHOLDER_SECRETS = Secrets(
    superuser_password="generated-on-first-apply",
    replication_password="generated-on-first-apply",
    admin_password="generated-on-first-apply",
    rest_password="generated-on-first-apply",
)
