"""One daemon thread that runs a watcher's `_loop` until `stop()`: the drill's watchers
(cluster, load balancer, VIP) sample in the background while the fault happens."""

from __future__ import annotations

import threading


class BackgroundLoop:
    """Subclasses set THREAD_NAME and write `_loop`, which returns once `_stop` is set."""

    THREAD_NAME = "watcher"
    JOIN_SECONDS = 5.0  # one sample's timeout is far shorter: the loop sees `_stop` by then

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.THREAD_NAME, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=self.JOIN_SECONDS)

    def _loop(self) -> None:
        raise NotImplementedError
