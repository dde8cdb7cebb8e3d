"""Patroni facts: pure parsers of the REST API's JSON (the I/O is in shell/clients/patroni.py).

Shapes seen on Patroni 4.1.5 (fixtures in tests/unit/fixtures/patroni_*):
- /cluster says role "leader" (or "sync_standby", "quorum_standby", "standby_leader",
  "replica"); /patroni on the same node says "primary". Both are normalised to "primary".
- /cluster "lag", "receive_lag", "replay_lag" are integers in bytes, or the string
  "unknown" (stopped member); the leader has no lag keys; "timeline" is absent while a
  member's PostgreSQL is stopped.
- /cluster "api_url" ends in "/patroni"; members are sorted by name.
- Patroni before 3.0.4 (Debian 12 ships 3.0.2, fixtures patroni302_*) says "running" for a
  streaming replica and "master" on /patroni; the primary's /patroni "replication" list
  (pg_stat_replication) tells which replicas stream, on every version.
- /cluster is the answering node's cached DCS view, refreshed every loop_wait: a stopped
  replica shows "stopped" until its key expires (ttl), a SIGKILLed Patroni keeps its last
  state, and with etcd down a demoted leader is still listed as "leader". Ask each node
  GET /primary for the live answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from pgha_operator.core.facts.types import (
    PRIMARY,
    FrozenDict,
    PatroniMember,
    PatroniNodeStatus,
)

_ROLE_ALIASES = {"leader": PRIMARY, "master": PRIMARY}


def normalize_role(role: str) -> str:
    """Patroni's role names -> the operator's: "leader"/"master" -> "primary", rest kept."""
    return _ROLE_ALIASES.get(role, role)


def api_base(api_url: str) -> str:
    """ "http://h:8008/patroni" -> "http://h:8008" (the form clients and topology use)."""
    url = api_url.rstrip("/")
    return url.removesuffix("/patroni")


def _int_or_none(value: Any) -> int | None:
    # Patroni reports unknown numbers as the string "unknown".
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def parse_member(data: Mapping[str, Any]) -> PatroniMember:
    return PatroniMember(
        name=str(data["name"]),
        host=str(data.get("host", "")),
        port=int(data.get("port", 5432)),
        api_url=api_base(str(data.get("api_url", ""))),
        role=normalize_role(str(data.get("role", ""))),
        state=str(data.get("state", "")),
        timeline=_int_or_none(data.get("timeline")),
        lag_bytes=_int_or_none(data.get("lag")),
        pending_restart=bool(data.get("pending_restart", False)),
    )


def parse_cluster(data: Mapping[str, Any]) -> tuple[PatroniMember, ...]:
    """`GET /cluster` -> members, in Patroni's order (by name)."""
    return tuple(parse_member(m) for m in data.get("members", ()))


def parse_config(data: Mapping[str, Any]) -> FrozenDict:
    """`GET /config` (also the PATCH /config answer) -> the DCS configuration, frozen."""
    return FrozenDict(data)


def parse_patroni(data: Mapping[str, Any]) -> PatroniNodeStatus:
    """`GET /patroni` (also the body of /primary, /replica, /health) -> one node's status."""
    return PatroniNodeStatus(
        name=str(data.get("patroni", {}).get("name", "")),
        role=normalize_role(str(data.get("role", ""))),
        state=str(data.get("state", "")),
        timeline=_int_or_none(data.get("timeline")),
        pending_restart=bool(data.get("pending_restart", False)),
        sync_standby=bool(data.get("sync_standby", False)),
        replication_state=data.get("replication_state"),
        dcs_last_seen=_int_or_none(data.get("dcs_last_seen")),
    )


def streaming_replicas(primary_status: Mapping[str, Any]) -> frozenset[str]:
    """A primary's `GET /patroni` -> names of the members its pg_stat_replication shows
    streaming (application_name is the Patroni member name)."""
    return frozenset(
        str(r["application_name"])
        for r in primary_status.get("replication", ())
        if r.get("state") == "streaming" and r.get("application_name")
    )


def with_streaming(
    members: Sequence[PatroniMember], streaming: frozenset[str]
) -> tuple[PatroniMember, ...]:
    """Old Patroni's "running" replica -> "streaming" when the primary says it streams, so
    every Patroni version reads the same. Newer Patroni already says "streaming"."""
    return tuple(
        replace(m, state="streaming")
        if m.name in streaming and not m.is_leader and m.state == "running"
        else m
        for m in members
    )


def named_primaries(primaries: frozenset[str], members: Sequence[PatroniMember]) -> frozenset[str]:
    """Patroni before 4 has no member name in /patroni, so a primary is first known by its
    REST URL; /cluster maps the URL back to the member's name."""
    by_url = {m.api_url: m.name for m in members}
    return frozenset(by_url.get(p, p) for p in primaries)
