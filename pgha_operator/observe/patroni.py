"""Patroni facts: pure parsers of the REST API's JSON, and the collector that does the I/O.

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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import requests

from pgha_operator.observe.facts import (
    PRIMARY,
    FrozenDict,
    PatroniFacts,
    PatroniMember,
    PatroniNodeStatus,
)

TIMEOUT = 1.5  # seconds per request

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


def _describe(url: str, exc: Exception) -> str:
    if isinstance(exc, requests.ConnectionError) and "refused" in str(exc):
        return f"{url}: connection refused"
    if isinstance(exc, requests.Timeout):
        return f"{url}: timed out"
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"{url}: HTTP {exc.response.status_code} {exc.response.text.strip()[:200]}"
    return f"{url}: {type(exc).__name__}: {exc}"


def _get_json(
    session: requests.Session, url: str, path: str, auth: tuple[str, str] | None, timeout: float
) -> Any:
    resp = session.get(f"{url}/{path}", auth=auth, timeout=timeout)
    resp.raise_for_status()
    return resp.json()


@dataclass(frozen=True)
class _Probe:
    primary: str | None = None  # the node's name when it answered /primary 200
    error: str | None = None  # set when it did not answer at all
    streaming: frozenset[str] = frozenset()  # replicas a primary streams to


def _probe_primary(url: str, auth: tuple[str, str] | None, timeout: float) -> _Probe:
    """GET /primary: the answer's body is the node's /patroni status."""
    try:
        resp = requests.get(f"{url}/primary", auth=auth, timeout=timeout)
    except requests.RequestException as exc:
        return _Probe(error=_describe(url, exc))
    if resp.status_code != 200:
        return _Probe()  # 503: alive, not a primary
    try:
        body = resp.json()
        name, streaming = parse_patroni(body).name, streaming_replicas(body)
    except (ValueError, AttributeError, TypeError):
        name, streaming = "", frozenset()
    return _Probe(name or url, None, streaming)  # the URL stands in if the body had no name


def collect_patroni(
    api_urls: Sequence[str], auth: tuple[str, str] | None = None, timeout: float = TIMEOUT
) -> PatroniFacts:
    """GET /primary on every node, then GET /cluster and /config from one node.

    The node that answered /primary 200 is asked first: a primary still holds the leader
    key, so its cached DCS view is the freshest. Never raises.
    """
    urls = [api_base(u) for u in api_urls]
    with ThreadPoolExecutor(max_workers=max(1, len(urls))) as pool:
        probes = list(pool.map(lambda u: _probe_primary(u, auth, timeout), urls))
    primaries = frozenset(p.primary for p in probes if p.primary)
    streaming = frozenset().union(*(p.streaming for p in probes))
    answered_primary = [u for u, p in zip(urls, probes, strict=True) if p.primary]
    alive = [u for u, p in zip(urls, probes, strict=True) if p.error is None]
    order = answered_primary + [u for u in alive if u not in answered_primary]
    order += [u for u in urls if u not in order]  # a node may recover between requests

    errors = [p.error for p in probes if p.error]
    with requests.Session() as session:
        for url in order:
            try:
                members = parse_cluster(_get_json(session, url, "cluster", auth, timeout))
                members = with_streaming(members, streaming)
                primaries = named_primaries(primaries, members)
            except (requests.RequestException, ValueError, KeyError) as exc:
                errors.append(_describe(url, exc))
                continue
            try:
                config = parse_config(_get_json(session, url, "config", auth, timeout))
            except (requests.RequestException, ValueError) as exc:
                return PatroniFacts(
                    reachable=False,
                    members=members,
                    primaries=primaries,
                    error=f"GET /config failed: {_describe(url, exc)}",
                )
            return PatroniFacts(
                reachable=True, members=members, dynamic_config=config, primaries=primaries
            )
    detail = "; ".join(dict.fromkeys(errors)) or "no REST API URLs given"
    return PatroniFacts(
        reachable=False, primaries=primaries, error=f"no Patroni node answered: {detail}"
    )
