"""Status: what `pgha-operator status` shows and what the loop writes every cycle (pure;
shell/state/status_file.py writes and reads status.json)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pgha_operator.core.backup_health import backup_status, format_backup_status
from pgha_operator.core.conditions import Condition
from pgha_operator.core.facts.observed import Observed
from pgha_operator.core.plan import Desired
from pgha_operator.core.plan.catalog import CatalogRow, catalog_diff
from pgha_operator.core.topology import Topology


def build_status(
    desired: Desired,
    observed: Observed,
    conditions: Sequence[Condition],
    phase: str,
    decision: str,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    lbs = _loadbalancer_rows(desired, observed)
    status: dict[str, Any] = {
        "cluster": desired.cluster.name,
        "phase": phase,
        "lastDecision": decision,
        "conditions": [_condition_row(c) for c in conditions],
        "machines": _machine_rows(desired, observed),
        "etcd": {
            "reachable": observed.etcd.reachable,
            "members": _etcd_member_rows(desired.topology, observed),
        },
        "postgres": {"members": _postgres_member_rows(desired.topology, observed)},
        "loadBalancer": lbs[0] if len(lbs) == 1 else lbs,
    }
    rows = catalog_diff(desired.cluster.spec.postgres, observed).rows
    if rows:
        status["roles"] = [_catalog_row(r) for r in rows if r.kind == "role"]
        status["databases"] = [_catalog_row(r) for r in rows if r.kind == "database"]
    if (backup := backup_status(desired.cluster, observed)) is not None:
        status["backup"] = backup
    if extra:
        status.update(extra)
    return status


def _catalog_row(row: CatalogRow) -> dict[str, str]:
    return {"name": row.name, "ensure": row.ensure, "state": row.state, "reason": row.reason}


def _condition_row(c: Condition) -> dict[str, Any]:
    return {"type": c.type, "status": "True" if c.status else "False", "reason": c.reason}


def _machine_rows(desired: Desired, observed: Observed) -> list[dict[str, Any]]:
    return [
        {
            "name": m.name,
            "address": m.address,
            "roles": sorted(m.roles),
            "exists": observed.has_machine(m.name),
            "services": {
                svc: str(observed.service(m.name, svc)) for svc in desired.services.get(m.name, ())
            },
        }
        for m in desired.topology.machines
    ]


def _etcd_member_rows(topo: Topology, observed: Observed) -> list[dict[str, Any]]:
    """The spec's members in order, then any member etcd reports that the spec lacks."""
    by_name = {m.name: m for m in observed.etcd.members}
    rows = []
    for name in dict.fromkeys([*topo.etcd, *by_name]):
        member = by_name.get(name)
        rows.append(
            {
                "name": name,
                "address": topo.address(name) if name in topo.etcd else None,
                "member": member is not None,
                "healthy": name in observed.etcd.healthy,
                "isLearner": bool(member and member.is_learner),
            }
        )
    return rows


def _postgres_member_rows(topo: Topology, observed: Observed) -> list[dict[str, Any]]:
    """The spec's nodes in order, then any member Patroni reports that the spec lacks."""
    by_name = {m.name: m for m in observed.patroni.members}
    rows = []
    for name in dict.fromkeys([*topo.postgres, *by_name]):
        m = by_name.get(name)
        in_spec = name in topo.postgres
        rows.append(
            {
                "name": name,
                "address": topo.address(name) if in_spec else m and m.host,
                "role": m.role if m else None,
                "state": m.state if m else "absent",
                "timeline": m.timeline if m else None,
                "lagBytes": m.lag_bytes if m else None,
                "pendingRestart": bool(m and m.pending_restart),
                "restApi": topo.rest_api_url(name) if in_spec else m and m.api_url,
            }
        )
    return rows


def _loadbalancer_rows(desired: Desired, observed: Observed) -> list[dict[str, Any]]:
    topo = desired.topology
    ports = desired.cluster.spec.load_balancer.ports
    rows = []
    for lb in topo.loadbalancers:
        facts = observed.haproxy.get(lb)
        rows.append(
            {
                "machine": lb,
                "address": topo.address(lb),
                "ports": {
                    "primary": ports.primary,
                    "replicas": ports.replicas,
                    "stats": ports.stats,
                },
                "reachable": bool(facts and facts.reachable),
                "backends": [
                    {"name": s.server, "backend": s.backend, "status": s.status}
                    for s in (facts.servers if facts else ())
                ],
            }
        )
    return rows


def format_status(status: Mapping[str, Any]) -> str:
    """The human table of `pgha-operator status`."""
    lines = [
        f"cluster {status['cluster']}: {status['phase']}",
        f"last decision: {status.get('lastDecision', '-')}",
    ]
    if status.get("manifestError"):
        lines.append(
            f"manifest refused (last good one stays in force):\n  {status['manifestError']}"
        )
    lines.append("conditions:")
    for c in status.get("conditions", []):
        lines.append(f"  {c['type']:<17} {c['status']:<5} {c['reason']}")
    certs = status.get("certificates")
    if certs:
        lines.append(
            f"certificates: the first ends in {certs['daysLeft']} days ({certs['firstEnds']})"
        )
    lines.append("etcd members:")
    for m in status["etcd"]["members"]:
        health = "healthy" if m["healthy"] else "UNHEALTHY"
        learner = " learner" if m["isLearner"] else ""
        lines.append(f"  {m['name']:<12} {m['address'] or '-':<16} {health}{learner}")
    lines.append("postgres members:")
    for m in status["postgres"]["members"]:
        lag = "-" if m["lagBytes"] is None else f"{m['lagBytes']} B"
        lines.append(
            f"  {m['name']:<12} {m['address'] or '-':<16} {m['role'] or '-':<8} "
            f"{m['state']:<10} tl {m['timeline'] or '-':<3} lag {lag}"
        )
    for kind in ("roles", "databases"):
        if status.get(kind):
            lines.append(f"declared {kind}:")
            for row in status[kind]:
                why = f" ({row['reason']})" if row["reason"] else ""
                lines.append(f"  {row['name']:<16} {row['ensure']:<8} {row['state']}{why}")
    if status.get("backup"):
        lines += format_backup_status(status["backup"])
    lbs = status["loadBalancer"]
    for lb in lbs if isinstance(lbs, list) else [lbs]:
        p = lb["ports"]
        lines.append(
            f"haproxy {lb['machine']} {lb['address']}: primary :{p['primary']}, "
            f"replicas :{p['replicas']}, stats :{p['stats']}"
        )
        for b in lb["backends"]:
            lines.append(f"  {b['backend']:<9} {b['name']:<12} {b['status']}")
    return "\n".join(lines)
