"""fence_etcd.FirstAnswering: the first endpoint that answers wins; a blocked one (cut off,
or a follower waiting for an election) is never waited for."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from pgha_operator.shell.clients import ComponentError
from pgha_operator.shell.fence_etcd import FirstAnswering


class Endpoint:
    def __init__(self, url: str, behaviour: str, release: threading.Event) -> None:
        self.url, self.behaviour, self.release = url, behaviour, release

    def get(self, key: str) -> str | None:
        if self.behaviour == "blocks":
            self.release.wait(5)
            raise ComponentError(f"{self.url}: timed out", url=self.url)
        if self.behaviour == "fails":
            raise ComponentError(f"{self.url}: refused", url=self.url)
        return "node1"


class Clients:
    def __init__(self, behaviours: dict[str, str]) -> None:
        self.behaviours = behaviours
        self.release = threading.Event()

    def etcd(self, urls: Sequence[str], timeout: float | None = None) -> Endpoint:
        (url,) = urls
        return Endpoint(url, self.behaviours[url], self.release)


def test_the_first_answer_wins_without_waiting_for_a_blocked_endpoint() -> None:
    clients = Clients({"e1": "blocks", "e2": "fails", "e3": "answers"})
    reader = FirstAnswering(clients, ["e1", "e2", "e3"], timeout=1)  # type: ignore[arg-type]
    started = time.monotonic()
    assert reader.get("/service/demo/leader") == ("node1", True)
    assert time.monotonic() - started < 1.0
    assert reader.answered.url == "e3"  # type: ignore[attr-defined]  # the release goes there
    clients.release.set()


def test_no_answer_is_no_quorum() -> None:
    clients = Clients({"e1": "fails", "e2": "fails"})
    reader = FirstAnswering(clients, ["e1", "e2"], timeout=1)  # type: ignore[arg-type]
    assert reader.get("/k") == (None, False)
