"""`pgha-operator run --listen ADDR:PORT`: the running operator's status over HTTP.

Read-only and unauthenticated, like Patroni's GET endpoints: the status holds names,
addresses and decisions, never a password. Off unless asked for.

- GET /status   the status of the last cycle (the same JSON as `status --json`)
- GET /healthz  200 while the loop completes cycles; 503 when the last one is too old
- GET /readyz   200 when the cluster is Converged; 503 with the phase otherwise
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv4Address
from typing import Any

from pgha_operator.core.errors import PermanentError

# A cycle may legitimately take minutes (apt on a new machine), not this long.
STALE_AFTER = 900.0


@dataclass(frozen=True)
class Snapshot:
    status: Mapping[str, Any]
    at: float  # time.monotonic() when the cycle ended


@dataclass(frozen=True)
class Response:
    code: int
    body: str
    content_type: str = "application/json"


def parse_listen(text: str) -> tuple[str, int]:
    """ "127.0.0.1:8800" -> ("127.0.0.1", 8800); a clear error otherwise."""
    host, sep, port = text.rpartition(":")
    try:
        IPv4Address(host)
        number = int(port)
    except ValueError:
        number = -1
    if not sep or not 1 <= number <= 65535:
        raise PermanentError(f"--listen {text!r}: expected IPV4ADDRESS:PORT, e.g. 127.0.0.1:8800")
    return host, number


def respond(path: str, snapshot: Snapshot | None, now: float) -> Response:
    """Pure: the answer to GET `path` given the last cycle's snapshot."""
    path = path.split("?", 1)[0].rstrip("/") or "/"
    if path not in ("/status", "/healthz", "/readyz"):
        return Response(404, _json({"error": f"no such endpoint {path}"}))
    if snapshot is None:
        return Response(503, _json({"error": "no cycle has completed yet"}))
    age = round(now - snapshot.at, 1)
    phase = snapshot.status.get("phase")
    if path == "/status":
        return Response(200, _json(snapshot.status))
    if path == "/healthz":
        ok = age <= STALE_AFTER
        return Response(200 if ok else 503, _json({"ok": ok, "lastCycleSecondsAgo": age}))
    ready = phase == "Converged"
    return Response(200 if ready else 503, _json({"ready": ready, "phase": phase}))


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, default=str) + "\n"


class StatusServer:
    """Serves `respond` on a daemon thread; `latest` gives the last snapshot."""

    def __init__(self, address: tuple[str, int], latest: Callable[[], Snapshot | None]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                answer = respond(self.path, latest(), time.monotonic())
                data = answer.body.encode()
                self.send_response(answer.code)
                self.send_header("Content-Type", answer.content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # the operator's log is for decisions, not for every poll

        try:
            self.httpd = ThreadingHTTPServer(address, Handler)
        except OSError as exc:
            raise PermanentError(
                f"cannot listen on {address[0]}:{address[1]} for the status endpoint: "
                f"{exc.strerror}"
            ) from exc
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="status-http", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for serve_forever, so only if it runs
            self.httpd.shutdown()
        self.httpd.server_close()
