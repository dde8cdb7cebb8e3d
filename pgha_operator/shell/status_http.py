"""`pgha-operator run --listen ADDR:PORT`: the running operator's status over HTTP.

Read-only: the status holds names, addresses and decisions, never a password. Off unless
asked for. On a loopback address it is plain HTTP and open, like Patroni's GET endpoints;
on any other address it serves HTTPS with the operator's own certificate and every path but
/healthz and /readyz needs the operator's token (shell/endpoint_access.py).

- GET /         a read-only HTML page polling /status (shell/status_page.py)
- GET /status   the status of the last cycle (the same JSON as `status --json`)
- GET /healthz  200 while the loop completes cycles; 503 when the last one is too old
- GET /readyz   200 when the cluster is Converged; 503 with the phase otherwise
- GET /metrics  Prometheus metrics (shell/metrics.py), given to the server as a route
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from pgha_operator.core.errors import PermanentError
from pgha_operator.shell.endpoint_access import Access, access_for, token_matches
from pgha_operator.shell.status_page import CONTENT_SECURITY_POLICY, PAGE

# A cycle may legitimately take minutes (apt on a new machine), not this long.
STALE_AFTER = 900.0
OPEN_PATHS = ("/healthz", "/readyz")  # probes: open even where the rest needs the token
HANDSHAKE_TIMEOUT = 10.0


@dataclass(frozen=True)
class Snapshot:
    status: Mapping[str, Any]
    at: float  # time.monotonic() when the cycle ended


@dataclass(frozen=True)
class Response:
    code: int
    body: str
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


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


def open_endpoint(
    listen: str,
    operator_dir: Path,
    latest: Callable[[], Snapshot | None],
    secure: bool = False,
    routes: Mapping[str, Callable[[], Response]] | None = None,
) -> StatusServer:
    """`--listen ADDR:PORT` as `run` serves it: open on loopback, token + TLS elsewhere
    (or with `secure`). Binds now, so a taken port fails before anything else happens."""
    host, port = parse_listen(listen)
    access = access_for(host, operator_dir, force=secure)
    return StatusServer((host, port), latest, access, routes)


def respond(path: str, snapshot: Snapshot | None, now: float) -> Response:
    """Pure: the answer to GET `path` given the last cycle's snapshot."""
    path = _clean(path)
    if path == "/":
        return Response(
            200,
            PAGE,
            "text/html; charset=utf-8",
            (("Content-Security-Policy", CONTENT_SECURITY_POLICY),),
        )
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


def denied(path: str, authorization: str | None, access: Access | None) -> Response | None:
    """Pure: the 401 for a request without the token, None when it may go on."""
    if access is None or _clean(path) in OPEN_PATHS:
        return None
    if token_matches(authorization, access.token):
        return None
    # Basic too: a browser then asks for it (any user name, the token as password).
    challenge = (
        ("WWW-Authenticate", 'Bearer realm="pgha-operator"'),
        ("WWW-Authenticate", 'Basic realm="pgha-operator", charset="UTF-8"'),
    )
    body = _json({"error": "this endpoint needs the token (pgha-operator token)"})
    return Response(401, body, headers=challenge)


def _clean(path: str) -> str:
    return path.split("?", 1)[0].rstrip("/") or "/"


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, default=str) + "\n"


class StatusServer:
    """Serves `respond` on a daemon thread; `latest` gives the last snapshot."""

    def __init__(
        self,
        address: tuple[str, int],
        latest: Callable[[], Snapshot | None],
        access: Access | None = None,
        routes: Mapping[str, Callable[[], Response]] | None = None,
    ) -> None:
        self.access = access
        extra = dict(routes or {})  # more GET endpoints: path -> answer (e.g. /metrics)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                auth = self.headers.get("Authorization")
                route = extra.get(_clean(self.path))
                answer = denied(self.path, auth, access) or (
                    route() if route else respond(self.path, latest(), time.monotonic())
                )
                data = answer.body.encode()
                self.send_response(answer.code)
                self.send_header("Content-Type", answer.content_type)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                self.send_header("X-Content-Type-Options", "nosniff")
                for name, value in answer.headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # the operator's log is for decisions, not for every poll

        try:
            self.httpd = (_TlsServer if access else ThreadingHTTPServer)(address, Handler)
        except OSError as exc:
            raise PermanentError(
                f"cannot listen on {address[0]}:{address[1]} for the status endpoint: "
                f"{exc.strerror}"
            ) from exc
        self.httpd.daemon_threads = True
        if access:
            self.httpd.tls = access.tls  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="status-http", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"{'https' if self.access else 'http'}://{host}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for serve_forever, so only if it runs
            self.httpd.shutdown()
        self.httpd.server_close()


class _TlsServer(ThreadingHTTPServer):
    """HTTPS whose TLS handshake runs in the request's own thread, so a client that
    stalls in it never holds up accept() for the others."""

    tls: Any = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(HANDSHAKE_TIMEOUT)
        try:
            wrapped = self.tls.wrap_socket(request, server_side=True)
        except (OSError, ValueError):
            return  # a plain-HTTP or broken client: nothing to answer over TLS
        try:
            super().finish_request(wrapped, client_address)
        finally:
            self.shutdown_request(wrapped)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away mid-answer is not the operator's error
