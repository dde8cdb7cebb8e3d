"""The status page in a real headless Chromium, fed a fixed status: every section shows,
and data that looks like markup stays text. (tests/integration/test_cluster.py watches
the page follow a real switchover.)"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from pgha_operator.shell.status_http import Snapshot, StatusServer
from tests.integration.browser import headless_chromium

pytestmark = pytest.mark.integration

EVIL = '<img src=x onerror="document.title=\'pwned\'"><b id="injected">bold</b>'


def status(primary: str, decision: str) -> dict[str, Any]:
    member = {"address": "127.0.9.1", "timeline": 4, "pendingRestart": False}
    return {
        "cluster": "pagetest",
        "phase": "Converged",
        "lastDecision": decision,
        "updatedAt": "2026-11-28T10:00:00+00:00",
        "conditions": [{"type": "EtcdHealthy", "status": "True", "reason": "3/3 healthy"}],
        "machines": [
            {
                "name": "node1",
                "address": "127.0.9.1",
                "roles": ["postgres"],
                "exists": True,
                "services": {"patroni": "running"},
            },
        ],
        "etcd": {
            "reachable": True,
            "members": [
                {
                    "name": "etcd1",
                    "address": "127.0.9.101",
                    "member": True,
                    "healthy": True,
                    "isLearner": False,
                },
            ],
        },
        "postgres": {
            "members": [
                {
                    **member,
                    "name": "node1",
                    "role": "primary" if primary == "node1" else "replica",
                    "state": "running",
                    "lagBytes": None,
                },
                {
                    **member,
                    "name": "node2",
                    "role": "primary" if primary == "node2" else "replica",
                    "state": "streaming",
                    "lagBytes": 1234,
                },
            ]
        },
        "loadBalancer": {
            "machine": "haproxy1",
            "address": "127.0.9.201",
            "reachable": True,
            "ports": {"primary": 5000, "replicas": 5001, "stats": 7000},
            "backends": [{"name": primary, "backend": "primary", "status": "UP"}],
        },
        "fencing": {
            "mode": "auto",
            "available": True,
            "watching": primary,
            "lastDecision": "node1 answers",
            "note": None,
        },
        "events": [{"time": "2026-11-28T09:59:00+00:00", "message": EVIL}],
    }


@pytest.fixture
def served() -> Iterator[tuple[StatusServer, list[Snapshot]]]:
    snaps = [Snapshot(status("node1", EVIL), time.monotonic())]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = StatusServer(("127.0.0.1", port), lambda: snaps[-1])
    server.start()
    try:
        yield server, snaps
    finally:
        server.stop()


def text_of(driver: Any, css: str) -> str:
    found = driver.find_elements(By.CSS_SELECTOR, css)
    return found[0].text if found else ""


def test_page_shows_every_section_as_text_and_follows_the_status(
    served: tuple[StatusServer, list[Snapshot]],
) -> None:
    server, snaps = served
    with headless_chromium() as driver:
        driver.get(f"{server.url}/")
        wait = WebDriverWait(driver, 30)
        wait.until(lambda d: text_of(d, '[data-cluster="pagetest"] .primary') == "node1")
        body = driver.find_element(By.TAG_NAME, "body").text
        for expected in (
            "Converged",
            "EtcdHealthy",
            "3/3 healthy",
            "etcd1",
            "127.0.9.101",
            "node2",
            "streaming",
            "1234 B",
            "haproxy1",
            "UP",
            "node1 answers",
            "patroni running",
        ):
            assert expected in body, expected
        # The markup in a decision and an event is shown as written, never parsed.
        assert EVIL in text_of(driver, '[data-cluster="pagetest"] .decision')
        assert body.count(EVIL) == 2
        assert driver.find_elements(By.CSS_SELECTOR, "#injected, main img") == []
        assert driver.title == "pgha-operator status"
        # The script polls: a new status shows without reloading the page.
        snaps.append(Snapshot(status("node2", "switched over"), time.monotonic()))
        wait.until(lambda d: text_of(d, '[data-cluster="pagetest"] .primary') == "node2")
        assert (
            driver.find_element(By.CSS_SELECTOR, '[data-member="node2"]').get_attribute("data-role")
            == "primary"
        )
        logs = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert logs == []  # no script error, no policy violation
