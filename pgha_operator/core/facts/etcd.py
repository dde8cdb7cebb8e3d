"""etcd facts: pure parsers of the /v3 gateway's JSON, the I/O is in shell/clients/etcd.py.

Shapes seen on etcd 3.4.23 (fixtures in tests/unit/fixtures/etcd_*):
- uint64 values (member ids, revisions, raft terms) are JSON strings of decimal digits.
- false booleans and empty lists are omitted: a voter has no "isLearner" key, and a
  member added but not started yet has no "name" and no "clientURLs".
- the member list is served by any member, even one that has lost quorum (etcd 3.4 does
  not make it linearizable), so a listing alone does not prove the cluster is healthy.
- `GET /health` answers 200 {"health":"true"} or 503 {"health":"false"} (no leader);
  a learner answers "true" although it refuses reads and writes (503).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pgha_operator.core.facts.types import EtcdEndpointStatus, EtcdMember


def parse_member(data: Mapping[str, Any]) -> EtcdMember:
    return EtcdMember(
        id=str(data["ID"]),
        name=str(data.get("name", "")),
        peer_urls=tuple(data.get("peerURLs", ())),
        client_urls=tuple(data.get("clientURLs", ())),
        is_learner=bool(data.get("isLearner", False)),
    )


def parse_member_list(data: Mapping[str, Any]) -> tuple[EtcdMember, ...]:
    """`POST /v3/cluster/member/list` (also the add/promote/remove answers) -> members."""
    return tuple(parse_member(m) for m in data.get("members", ()))


def parse_health(data: Mapping[str, Any]) -> bool:
    """`GET /health` body -> healthy? etcd sends the boolean as a string."""
    value = data.get("health")
    return value is True or (isinstance(value, str) and value.lower() == "true")


def parse_status(data: Mapping[str, Any]) -> EtcdEndpointStatus:
    """`POST /v3/maintenance/status` -> leader as seen by that endpoint, learner flag."""
    leader = data.get("leader")
    term = data.get("raftTerm")
    return EtcdEndpointStatus(
        member_id=str(data.get("header", {}).get("member_id", "")),
        # Absent (or "0") when the endpoint has no leader; "errors" then says "no leader".
        leader_id=str(leader) if leader not in (None, "", "0", 0) else None,
        is_learner=bool(data.get("isLearner", False)),
        version=str(data.get("version", "")),
        raft_term=int(term) if term is not None else None,
        errors=tuple(str(e) for e in data.get("errors", ())),
    )
