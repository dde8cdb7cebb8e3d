"""The drill's member watcher: Patroni's member list and etcd's health, twice a second.

It answers "when did the failed node rejoin as a replica" and "when were the stopped etcd
members healthy again", and tells the fault injectors who the primary is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import requests

from pgha_operator.observe.etcd import parse_health
from pgha_operator.observe.patroni import parse_cluster

TIMEOUT = 0.8


@dataclass(frozen=True)
class MemberView:
    role: str  # "primary", "replica", "sync_standby", ...
    state: str  # "running", "streaming", "stopped", ...


@dataclass(frozen=True)
class WatchSample:
    at: float  # time.monotonic()
    members: Mapping[str, MemberView] = field(default_factory=dict)  # {} when no node answered
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
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(self.etcd_urls)))
        self._session = requests.Session()
        self._answered: str | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        self._pool.shutdown(wait=True)
        self._session.close()

    def latest(self) -> WatchSample | None:
        return self.samples[-1] if self.samples else None

    def sample(self) -> WatchSample:
        healthy = self._pool.map(self._etcd_healthy, self.etcd_urls.values())
        members = self._members()
        etcd = frozenset(n for n, ok in zip(self.etcd_urls, healthy, strict=True) if ok)
        return WatchSample(time.monotonic(), members, etcd)

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.samples.append(self.sample())
            self._stop.wait(max(0.0, started + self.interval - time.monotonic()))

    def _members(self) -> dict[str, MemberView]:
        urls = list(self.rest_urls.values())
        # The node that answered last time first: a frozen node costs a timeout per sample.
        urls.sort(key=lambda u: u != self._answered)
        for url in urls:
            try:
                resp = self._session.get(f"{url}/cluster", timeout=TIMEOUT)
                resp.raise_for_status()
                members = parse_cluster(resp.json())
            except (requests.RequestException, ValueError, KeyError):
                continue
            self._answered = url
            return {m.name: MemberView(m.role, m.state) for m in members}
        return {}

    @staticmethod
    def _etcd_healthy(url: str) -> bool:
        try:
            resp = requests.get(f"{url}/health", timeout=TIMEOUT)
            return resp.ok and parse_health(resp.json())
        except (requests.RequestException, ValueError):
            return False


def primary_of(sample: WatchSample | None) -> str | None:
    if sample is None:
        return None
    return next((n for n, m in sample.members.items() if m.role == "primary"), None)


def is_streaming_replica(sample: WatchSample, node: str) -> bool:
    view = sample.members.get(node)
    return view is not None and view.role != "primary" and view.state == "streaming"

