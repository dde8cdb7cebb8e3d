"""The drill's load-balancer watcher: which servers HAProxy has UP in its primary backend,
from its stats page, every 50 ms (the timeline's "HAProxy sees the new primary")."""

from __future__ import annotations

import time
from dataclasses import dataclass

from pgha_operator.core.conditions import PRIMARY_BACKEND
from pgha_operator.drill.background import BackgroundLoop
from pgha_operator.shell.clients import ComponentError
from pgha_operator.shell.clients.haproxy import HaproxyClient

INTERVAL = 0.05
TIMEOUT = 0.5


@dataclass(frozen=True)
class LbSample:
    at: float  # time.monotonic() when the answer came
    up: frozenset[str]  # servers UP in the primary backend


class LbWatcher(BackgroundLoop):
    THREAD_NAME = "lb-watcher"

    def __init__(self, stats_url: str, auth: tuple[str, str]) -> None:
        super().__init__()
        self.client = HaproxyClient(stats_url, auth, timeout=TIMEOUT)
        self.samples: list[LbSample] = []

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                rows = self.client.stats()
            except ComponentError:
                rows = ()  # HAProxy restarting: no sample
            else:
                up = frozenset(r.server for r in rows if r.backend == PRIMARY_BACKEND and r.is_up)
                self.samples.append(LbSample(time.monotonic(), up))
            self._stop.wait(max(0.0, started + INTERVAL - time.monotonic()))
