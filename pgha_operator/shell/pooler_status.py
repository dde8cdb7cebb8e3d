"""`status`'s pooler section (spec.pooler): SHOW POOLS on every PostgreSQL node's PgBouncer.
Asked only by `status`, never by the loop's observation (a login per node and cycle)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pgha_operator.core.render import POOLER_USER
from pgha_operator.shell.clients import ComponentError
from pgha_operator.shell.clients.pgbouncer import show_pools
from pgha_operator.shell.controller import Controller

# The columns `status` prints (PgBouncer 1.18's SHOW POOLS has more).
COLUMNS = ("database", "user", "cl_active", "cl_waiting", "sv_active", "sv_idle", "pool_mode")


def pooler_pools(ctl: Controller) -> dict[str, Any]:
    """machine -> {"pools": [...]} or {"error": "..."}; {} with the pooler off."""
    spec = ctl.cluster.spec
    secrets = ctl.state.secrets()
    if not spec.pooler.enabled:
        return {}
    topo = ctl.topology
    if secrets is None or not secrets.pooler_password:
        return {
            name: {"error": "no pooler password yet: run apply first"} for name in topo.postgres
        }
    ca = ctl.state.client_tls().ca

    def ask(machine: str) -> dict[str, Any]:
        try:
            pools = show_pools(
                topo.address(machine), spec.pooler.port, POOLER_USER, secrets.pooler_password, ca
            )
        except ComponentError as exc:
            return {"error": str(exc)}
        return {"pools": [{c: p.get(c) for c in COLUMNS} for p in pools]}

    with ThreadPoolExecutor(max_workers=min(8, len(topo.postgres))) as pool:
        return dict(zip(topo.postgres, pool.map(ask, topo.postgres), strict=True))


def format_pools(pools: dict[str, Any]) -> str:
    """One line per machine and pool (the admin console's own `pgbouncer` pool left out)."""
    lines = ["pooler (SHOW POOLS):"]
    for machine, answer in pools.items():
        if "error" in answer:
            lines.append(f"  {machine}: {answer['error']}")
            continue
        shown = [p for p in answer["pools"] if p["database"] != "pgbouncer"]
        if not shown:
            lines.append(f"  {machine}: no pools yet")
        for p in shown:
            lines.append(
                f"  {machine}: {p['database']}/{p['user']} {p['pool_mode']} "
                f"clients active {p['cl_active']} waiting {p['cl_waiting']}, "
                f"servers active {p['sv_active']} idle {p['sv_idle']}"
            )
    return "\n".join(lines)
