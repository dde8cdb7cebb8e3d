"""The drill's watcher: what each Patroni node says about itself (`GET /patroni`) and
each etcd member's health, twice a second.

It answers "when did the failed node rejoin as a streaming replica" and "when were the
stopped etcd members healthy again". Each node is asked itself: `/cluster` is a cached DCS
view that keeps a SIGKILLed member "streaming" until its key expires.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pgha_operator.core.facts.patroni import parse_patroni, streaming_replicas
from pgha_operator.drill.background import BackgroundLoop
from pgha_operator.shell.clients import ComponentError
from pgha_operator.shell.clients.etcd import member_healthy
from pgha_operator.shell.clients.patroni import PatroniClient
from pgha_operator.shell.clients.tls import ClientTls

TIMEOUT = 0.8


@dataclass(frozen=True)
class NodeView:
    """What one Patroni node says about itself (GET /patroni), live."""

    role: str  # "primary", "replica", ...
    state: str  # "running", "stopped", "starting", ...
    replication_state: str | None = None  # "streaming" on a healthy replica

    @property
    def streaming_replica(self) -> bool:
        return self.role == "replica" and self.replication_state == "streaming"


@dataclass(frozen=True)
class WatchSample:
    at: float  # time.monotonic()
    nodes: Mapping[str, NodeView | None] = field(default_factory=dict)  # None: no answer
    etcd_healthy: frozenset[str] = frozenset()


class Watcher(BackgroundLoop):
    JOIN_SECONDS = 10.0  # a sample asks every node and member, each with its own timeout

    def __init__(
        self,
        rest_urls: Mapping[str, str],  # Patroni node -> REST base URL
        etcd_urls: Mapping[str, str],  # etcd member -> client URL
        interval: float = 0.5,
        tls: ClientTls | None = None,  # the operator's files: the CA; etcd requires a client cert
    ) -> None:
        super().__init__()
        self.rest_urls = dict(rest_urls)
        self.etcd_urls = dict(etcd_urls)
        self.tls = tls
        self.interval = interval
        self.samples: list[WatchSample] = []
        self._pool = ThreadPoolExecutor(max_workers=len(self.rest_urls) + len(self.etcd_urls))

    def stop(self) -> None:
        super().stop()
        self._pool.shutdown(wait=True)

    def latest(self) -> WatchSample | None:
        return self.samples[-1] if self.samples else None

    def sample(self) -> WatchSample:
        answers = list(
            self._pool.map(lambda url: _node_answer(url, self.tls), self.rest_urls.values())
        )
        healthy = self._pool.map(
            lambda url: member_healthy(url, TIMEOUT, self.tls), self.etcd_urls.values()
        )
        return WatchSample(
            time.monotonic(),
            node_views(dict(zip(self.rest_urls, answers, strict=True))),
            frozenset(n for n, ok in zip(self.etcd_urls, healthy, strict=True) if ok),
        )

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.samples.append(self.sample())
            self._stop.wait(max(0.0, started + self.interval - time.monotonic()))


def node_views(answers: Mapping[str, Mapping[str, Any] | None]) -> dict[str, NodeView | None]:
    """Each node's `GET /patroni` body (None: no answer) -> its view. Patroni before 3.0.4
    has no "replication_state"; there a primary's replication list names the streaming
    replicas instead."""
    streaming = frozenset().union(
        *(streaming_replicas(body) for body in answers.values() if body is not None)
    )
    views: dict[str, NodeView | None] = {}
    for name, body in answers.items():
        if body is None:
            views[name] = None
            continue
        status = parse_patroni(body)
        replication = status.replication_state
        if replication is None and status.role == "replica" and name in streaming:
            replication = "streaming"
        views[name] = NodeView(status.role, status.state, replication)
    return views


def _node_answer(url: str, tls: ClientTls | None) -> Mapping[str, Any] | None:
    try:
        with PatroniClient(url, timeout=TIMEOUT, tls=tls) as client:
            body = client.patroni()
    except ComponentError:
        return None
    return body if isinstance(body, dict) else None
