"""etcd facts: pure parsers of the /v3 gateway's JSON, and the collector that does the I/O.

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

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from pgha_operator.observe.facts import EtcdEndpointStatus, EtcdFacts, EtcdMember

TIMEOUT = 1.5  # seconds per request: a cycle must not hang on a dead member


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


def _post(url: str, path: str, timeout: float) -> Any:
    resp = requests.post(f"{url.rstrip('/')}/v3/{path}", json={}, timeout=timeout)
    resp.raise_for_status()
    return resp.json()


def _health(client_url: str, timeout: float) -> bool:
    try:
        resp = requests.get(f"{client_url.rstrip('/')}/health", timeout=timeout)
        return parse_health(resp.json())  # 503 still carries {"health": "false"}
    except (requests.RequestException, ValueError):
        return False


def _describe(exc: Exception) -> str:
    # requests' messages are long (pools, retries); keep the reason a human needs.
    if isinstance(exc, requests.ConnectionError) and "refused" in str(exc):
        return "connection refused"
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code}: {exc.response.text.strip()[:200]}"
    return f"{type(exc).__name__}: {exc}"


def collect_etcd(client_urls: Sequence[str], timeout: float = TIMEOUT) -> EtcdFacts:
    """Member list through the first endpoint that answers, then /health of every member.

    Never raises: an unreachable cluster is a fact (reachable=False, error says why).
    """
    errors: list[str] = []
    members: tuple[EtcdMember, ...] | None = None
    answered = ""
    for url in client_urls:
        try:
            members = parse_member_list(_post(url, "cluster/member/list", timeout))
            answered = url
            break
        except (requests.RequestException, ValueError, KeyError) as exc:
            errors.append(f"{url}: {_describe(exc)}")
    if members is None:
        detail = "; ".join(errors) or "no client URLs given"
        return EtcdFacts(reachable=False, error=f"no etcd endpoint answered: {detail}")

    probed = [m for m in members if m.name and m.client_urls]
    with ThreadPoolExecutor(max_workers=max(1, len(probed) + 1)) as pool:
        status_f = pool.submit(_post, answered, "maintenance/status", timeout)
        health_f = {m.name: pool.submit(_health, m.client_urls[0], timeout) for m in probed}
        healthy = frozenset(name for name, f in health_f.items() if f.result())
        try:
            leader_id = parse_status(status_f.result()).leader_id
        except (requests.RequestException, ValueError, KeyError):
            leader_id = None
    return EtcdFacts(reachable=True, members=members, healthy=healthy, leader_id=leader_id)
