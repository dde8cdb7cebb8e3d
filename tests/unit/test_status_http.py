"""The status endpoint: pure answers, and the server on a loopback port."""

from __future__ import annotations

import json
import socket
import time

import pytest
import requests

from pgha_operator.core.errors import PermanentError
from pgha_operator.shell.status_http import (
    STALE_AFTER,
    Snapshot,
    StatusServer,
    parse_listen,
    respond,
)

STATUS = {"cluster": "demo", "phase": "Converged", "observedGeneration": 3}


def test_status_healthz_readyz_after_a_cycle() -> None:
    snap = Snapshot(STATUS, at=100.0)
    status = respond("/status", snap, now=101.0)
    assert (status.code, json.loads(status.body)) == (200, STATUS)
    health = respond("/healthz", snap, now=102.5)
    assert (health.code, json.loads(health.body)) == (
        200,
        {"ok": True, "lastCycleSecondsAgo": 2.5},
    )
    ready = respond("/readyz/", snap, now=101.0)
    assert (ready.code, json.loads(ready.body)) == (200, {"ready": True, "phase": "Converged"})


def test_not_ready_while_not_converged_and_unhealthy_when_the_loop_stalls() -> None:
    snap = Snapshot({**STATUS, "phase": "Degraded"}, at=0.0)
    ready = respond("/readyz", snap, now=1.0)
    assert (ready.code, json.loads(ready.body)["phase"]) == (503, "Degraded")
    assert respond("/status", snap, now=1.0).code == 200  # status itself is always served
    assert respond("/healthz", snap, now=STALE_AFTER + 1).code == 503


def test_before_the_first_cycle_and_unknown_paths() -> None:
    assert respond("/status", None, now=0.0).code == 503
    assert "no cycle" in respond("/healthz", None, now=0.0).body
    assert respond("/metrics", Snapshot(STATUS, 0.0), now=0.0).code == 404
    assert respond("/status?pretty=1", Snapshot(STATUS, 0.0), now=0.0).code == 200


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:8800", ("127.0.0.1", 8800)), ("0.0.0.0:1", ("0.0.0.0", 1))],
)
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["8800", "localhost:8800", "127.0.0.1:0", "127.0.0.1:x", ":80"])
def test_parse_listen_refuses(text: str) -> None:
    with pytest.raises(PermanentError, match="IPV4ADDRESS:PORT"):
        parse_listen(text)


def test_server_answers_on_loopback_and_a_taken_port_is_a_clear_error() -> None:
    snapshots: list[Snapshot] = []
    server = StatusServer(("127.0.0.1", 0), lambda: snapshots[-1] if snapshots else None)
    server.start()
    try:
        assert requests.get(f"{server.url}/status", timeout=5).status_code == 503
        snapshots.append(Snapshot(STATUS, at=time.monotonic()))
        resp = requests.get(f"{server.url}/status", timeout=5)
        assert resp.status_code == 200 and resp.json() == STATUS
        assert resp.headers["Content-Type"] == "application/json"
        assert requests.post(f"{server.url}/status", timeout=5).status_code == 501
        port = int(server.url.rsplit(":", 1)[1])
        with pytest.raises(PermanentError, match=f"cannot listen on 127.0.0.1:{port}"):
            StatusServer(("127.0.0.1", port), lambda: None)
    finally:
        server.stop()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def test_stop_without_start_does_not_hang() -> None:
    StatusServer(("127.0.0.1", 0), lambda: None).stop()


def test_the_page_is_static_html_whose_script_the_policy_allows() -> None:
    from pgha_operator.shell.status_page import SCRIPT, STYLE, _csp_hash

    page = respond("/", None, now=0.0)  # served before the first cycle too: it has no data
    assert page.code == 200 and page.content_type.startswith("text/html")
    assert page.body.startswith("<!DOCTYPE html>") and f"<script>{SCRIPT}</script>" in page.body
    policy = dict(page.headers)["Content-Security-Policy"]
    assert f"script-src {_csp_hash(SCRIPT)};" in policy and _csp_hash(STYLE) in policy
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    # Data goes in as text: the script never parses strings as markup.
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in SCRIPT
