"""Patroni steps of the plan (pure): machines leaving the cluster, DCS configuration through
PATCH /config (rule 7), rolling restarts (rule 3) and switchovers before touching a primary
(rules 3, 4)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pgha_operator.core.actions import (
    Action,
    DestroyMachine,
    PatchPatroniConfig,
    RestartPostgres,
    StopService,
    Switchover,
    WaitFor,
)
from pgha_operator.core.desired import Desired
from pgha_operator.core.facts.observed import Observed
from pgha_operator.core.facts.types import PatroniMember, thaw
from pgha_operator.core.plan.etcd import etcd_has_quorum
from pgha_operator.core.services import ServiceState

# teardown order of a machine that leaves: the VIP first, so a peer takes it at once
SERVICES = ("keepalived", "haproxy", "pgbouncer", "patroni", "etcd")


def switchover_candidate(desired: Desired, observed: Observed, leader: str) -> str | None:
    """The healthiest streaming replica that stays in the cluster, least lag first. Its
    Patroni must be seen running: a dead node's member key keeps saying "streaming" in
    /cluster until its TTL, and Patroni refuses a switchover to it."""
    limit = desired.cluster.spec.patroni.maximum_lag_on_failover
    candidates = [
        m
        for m in observed.patroni.members
        if m.name != leader
        and m.name in desired.topology.postgres
        and m.state == "streaming"
        and (m.lag_bytes or 0) <= limit
        and observed.service(m.name, "patroni") == ServiceState.RUNNING
    ]
    if desired.cluster.spec.postgres.synchronous != "off":
        sync = [m for m in candidates if m.role == "sync_standby"]
        candidates = sync or candidates
    best = min(candidates, key=lambda m: (m.lag_bytes or 0, m.name), default=None)
    return best.name if best else None


def removals(desired: Desired, observed: Observed) -> list[Action]:
    """Tear down one machine that left the manifest per cycle, the safe way round."""
    wanted = {m.name for m in desired.topology.machines}
    # Stopped machines too (nspawn, vagrant list them): one left behind would never go.
    leaving = sorted(n for n in observed.machines if n not in wanted)
    leader = observed.patroni.leader
    if leader is not None and leader.name in leaving and not etcd_has_quorum(observed):
        return [WaitFor(f"an etcd quorum to switch over from {leader.name} before removing it")]
    if leader is not None and leader.name in leaving:
        # Rule 4, and before anything else: the primary hands over while HAProxy still
        # routes to it, so writes pause only for the switchover itself.
        candidate = switchover_candidate(desired, observed, leader.name)
        if candidate is None:
            return [
                WaitFor(f"a healthy replica to take over from {leader.name} before removing it")
            ]
        return [Switchover(leader.name, candidate, f"before removing {leader.name}")]
    for name in leaving:
        fact = observed.machines[name]
        peer = desired.topology.etcd_peer_url_at(fact.address)
        if any(peer in m.peer_urls for m in observed.etcd.members):
            continue  # still an etcd member: the membership step removes it first
        member = observed.patroni.member(name)
        if observed.service(name, "patroni") == ServiceState.RUNNING:
            return [StopService(name, "patroni", "leaving the cluster")]
        if member is not None:
            return [WaitFor(f"{name} to leave the Patroni cluster before deleting its data")]
        # An unreachable etcd or Patroni lists no members: that says nothing about `name`,
        # which may still be a voter (destroying two of three loses etcd for good).
        unknown = [
            c
            for c, f in (("etcd", observed.etcd), ("Patroni", observed.patroni))
            if not f.reachable
        ]
        if unknown:
            return [WaitFor(f"{' and '.join(unknown)} to answer before deleting {name}")]
        return [DestroyMachine(name)]
    return []


def config_patch(desired: Desired, observed: Observed) -> list[Action]:
    facts = observed.patroni
    if not facts.reachable or facts.leader is None or not facts.dynamic_config:
        return []
    patch = _diff(desired.dynamic_config, thaw(facts.dynamic_config))
    if not patch:
        return []
    return [
        PatchPatroniConfig(
            facts.leader.name, json.dumps(patch, sort_keys=True), tuple(_keys(patch))
        )
    ]


def _diff(want: Mapping[str, Any], have: Mapping[str, Any], path: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in want.items():
        current = have.get(key)
        if isinstance(value, Mapping):
            sub = _diff(value, current if isinstance(current, Mapping) else {}, f"{path}{key}.")
            if sub:
                out[key] = sub
        elif not _same(value, current):
            out[key] = value
    if path.endswith("parameters."):
        # A parameter dropped from the manifest goes back to PostgreSQL's default.
        out.update({key: None for key in have if key not in want})
    return out


def _same(a: Any, b: Any) -> bool:
    return a == b or (a is not None and b is not None and str(a) == str(b))


def _keys(patch: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys: list[str] = []
    for k, v in sorted(patch.items()):
        keys += _keys(v, f"{prefix}{k}.") if isinstance(v, Mapping) else [f"{prefix}{k}"]
    return keys


def rolling_restart(desired: Desired, observed: Observed) -> list[Action]:
    """Apply pending-restart parameters one node at a time: replicas, then a switchover,
    then the old primary."""
    members = [m for m in observed.patroni.members if m.name in desired.topology.postgres]
    pending = [m for m in members if m.pending_restart]
    if not pending:
        return []
    unhealthy = [m.name for m in members if not _healthy(m)]
    if unhealthy:
        return [WaitFor(f"{', '.join(unhealthy)} healthy before the next rolling restart step")]
    replicas = sorted((m for m in pending if m.role != "primary"), key=lambda m: m.name)
    if replicas:
        return [RestartPostgres(replicas[0].name, "parameters need a restart")]
    primary = pending[0].name
    candidate = switchover_candidate(desired, observed, primary)
    if candidate is None:
        if len(members) == 1:
            return [RestartPostgres(primary, "parameters need a restart; no replica to take over")]
        return [WaitFor(f"a healthy replica to take over before restarting {primary}")]
    return [Switchover(primary, candidate, f"before restarting {primary}")]


def _healthy(m: PatroniMember) -> bool:
    return m.state == "running" if m.role == "primary" else m.state == "streaming"
