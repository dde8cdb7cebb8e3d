"""The drill's watcher: what each Patroni node says about itself (`GET /patroni`) and
each etcd member's health, twice a second.

It answers "when did the failed node rejoin as a streaming replica" and "when were the
stopped etcd members healthy again". Each node is asked itself: `/cluster` is a cached DCS
view that keeps a SIGKILLed member "streaming" until its key expires.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import requests

from pgha_operator.observe.etcd import parse_health
from pgha_operator.observe.patroni import parse_patroni

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


class Watcher:
    def __init__(
        self,
        rest_urls: Mapping[str, str],  # Patroni node -> REST base URL
        etcd_urls: Mapping[str, str],  # etcd member -> client URL
        interval: float = 0.5,
    ) -> None:
        self.rest_urls = dict(rest_urls)
        self.etcd_urls = dict(etcd_urls)
        self.interval = interval
        self.samples: list[WatchSample] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(max_workers=len(self.rest_urls) + len(self.etcd_urls))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        self._pool.shutdown(wait=True)

    def latest(self) -> WatchSample | None:
        return self.samples[-1] if self.samples else None

    def sample(self) -> WatchSample:
        nodes = self._pool.map(_node_view, self.rest_urls.values())
        healthy = self._pool.map(_etcd_healthy, self.etcd_urls.values())
        return WatchSample(
            time.monotonic(),
            dict(zip(self.rest_urls, nodes, strict=True)),
            frozenset(n for n, ok in zip(self.etcd_urls, healthy, strict=True) if ok),
        )

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.samples.append(self.sample())
            self._stop.wait(max(0.0, started + self.interval - time.monotonic()))


def _node_view(url: str) -> NodeView | None:
    try:
        resp = requests.get(f"{url}/patroni", timeout=TIMEOUT)
        resp.raise_for_status()
        status = parse_patroni(resp.json())
    except (requests.RequestException, ValueError):
        return None
    return NodeView(status.role, status.state, status.replication_state)


def _etcd_healthy(url: str) -> bool:
    try:
        resp = requests.get(f"{url}/health", timeout=TIMEOUT)
        return resp.ok and parse_health(resp.json())
    except (requests.RequestException, ValueError):
        return False
