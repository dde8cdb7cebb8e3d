"""The HTTP transport of the clients' frequent reads: the observation's GETs and POSTs (etcd,
Patroni, HAProxy) and the fencer's 200 ms probes.

Measured on the demo: `requests.get` costs ~0.8 ms of CPU per call (a Session built and the
proxy environment read each time), a shared requests Session ~0.55 ms, urllib3's pool
~0.3 ms; at 11 reads per cycle and 5 probes a second, that difference is a third of the
idle operator. So these reads go through one process-wide urllib3 pool (thread-safe; kept
connections where the server allows it: etcd and HAProxy do, Patroni's REST API closes
after each answer), while the rare changing calls keep requests.

`READERS` are the threads that make these reads in parallel (one per node, so nodes that
time out do so together), kept between cycles: starting a dozen threads every cycle was
the largest remaining cost of the idle demo. Nothing run on them submits to them again.

An https URL is verified against the cluster's CA, and the operator's client certificate is
offered, when the caller passes its `ClientTls` (one pool per set of files).

`get` and `post` answer like requests does (status_code, text, json(), raise_for_status())
and fail with requests' own exception types, so callers handle both alike. The operator
only speaks to its own machines: no proxy or .netrc lookups.
"""

from __future__ import annotations

import http.client
import json as jsonlib
import os
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from pgha_operator.shell.clients.tls import ClientTls

POOL_HOSTS = 128  # hosts kept: 89 Patroni nodes, a few etcd members and HAProxies
POOL_PER_HOST = 4  # kept connections per host (the observation asks in parallel)

READER_THREADS = 256  # started on demand, then kept: the most parallel reads of a cycle

READERS = ThreadPoolExecutor(max_workers=READER_THREADS, thread_name_prefix="pgha-read")

_POOL = urllib3.PoolManager(num_pools=POOL_HOSTS, maxsize=POOL_PER_HOST, block=False, retries=False)
_TLS_POOLS: dict[ClientTls, urllib3.PoolManager] = {}
_TLS_POOLS_LOCK = threading.Lock()


def _pool(tls: ClientTls | None) -> urllib3.PoolManager:
    """The pool for plain requests, or the one that verifies servers against `tls.ca` and
    presents `tls.cert` (files read per new connection: a renewed certificate is picked
    up by the next one)."""
    if tls is None:
        return _POOL
    with _TLS_POOLS_LOCK:
        pool = _TLS_POOLS.get(tls)
        if pool is None:
            pool = urllib3.PoolManager(
                num_pools=POOL_HOSTS,
                maxsize=POOL_PER_HOST,
                block=False,
                retries=False,
                cert_reqs="CERT_REQUIRED",
                ca_certs=tls.ca,
                cert_file=tls.cert,
                key_file=tls.key,
            )
            _TLS_POOLS[tls] = pool
        return pool


@dataclass(frozen=True)
class Answer:
    """The part of requests.Response the clients read."""

    url: str
    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return jsonlib.loads(self.content)  # ValueError when it is not JSON

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise requests.HTTPError(f"HTTP {self.status_code} for {self.url}", response=self)  # type: ignore[arg-type]


def request(
    method: str,
    url: str,
    *,
    json: Any = None,
    auth: tuple[str, str] | None = None,
    timeout: float,
    tls: ClientTls | None = None,
) -> Answer:
    """One request; `timeout` bounds the connect and each read, as in requests."""
    headers: dict[str, str] = {}
    body = None
    if auth is not None:
        headers.update(urllib3.make_headers(basic_auth=f"{auth[0]}:{auth[1]}"))
    if json is not None:
        body = jsonlib.dumps(json).encode()
        headers["Content-Type"] = "application/json"
    try:
        resp = _pool(tls).request(
            method,
            url,
            body=body,
            headers=headers,
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            redirect=False,
        )
    except NewConnectionError as exc:  # first: urllib3 2 derives it from a timeout error
        raise requests.ConnectionError(f"{url}: {exc}") from exc
    except Urllib3Timeout as exc:
        raise requests.Timeout(f"{url}: {exc}") from exc
    except Urllib3Error as exc:
        # str() keeps the cause ("[Errno 111] Connection refused"): callers look for it.
        raise requests.ConnectionError(f"{url}: {exc}") from exc
    return Answer(url, resp.status, resp.data)


def get(
    url: str,
    *,
    auth: tuple[str, str] | None = None,
    timeout: float,
    tls: ClientTls | None = None,
) -> Answer:
    return request("GET", url, auth=auth, timeout=timeout, tls=tls)


def post(url: str, *, json: Any = None, timeout: float, tls: ClientTls | None = None) -> Answer:
    return request("POST", url, json=json, timeout=timeout, tls=tls)


def status_of(url: str, *, timeout: float, ca: str | None = None) -> int:
    """The status of one GET, on a connection of its own (the fencer's 200 ms probe of
    Patroni, whose REST API closes every connection anyway): the standard library's client
    is half the CPU of a pooled request. An https URL is verified against `ca` (the
    cluster's CA); each probe then costs a TLS handshake (measured: ~1.2 ms of CPU here and
    ~0.9 ms in the server, 5 ms wall; TLS 1.3 session resumption saved under 10 %, so it is
    not used). Raises requests.Timeout or requests.ConnectionError."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        context = _probe_context(ca)
        conn = http.client.HTTPSConnection(
            host, parts.port or 443, timeout=timeout, context=context
        )
    else:
        conn = http.client.HTTPConnection(host, parts.port or 80, timeout=timeout)
    try:
        conn.request("GET", parts.path or "/")
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except TimeoutError as exc:
        raise requests.Timeout(f"{url}: timed out") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise requests.ConnectionError(f"{url}: {exc}") from exc
    finally:
        conn.close()


_PROBE_CONTEXTS: dict[str | None, tuple[int, ssl.SSLContext]] = {}


def _probe_context(ca: str | None) -> ssl.SSLContext:
    """A verifying context per CA file, kept (loading the CA costs more than a handshake) and
    made again when the file changes (a brought CA replaced)."""
    try:
        version = os.stat(ca).st_mtime_ns if ca else 0
    except OSError as exc:
        raise requests.ConnectionError(f"CA file {ca}: {exc.strerror}") from exc
    kept = _PROBE_CONTEXTS.get(ca)
    if kept is not None and kept[0] == version:
        return kept[1]
    # Hostname checking covers IP addresses: the node's certificate lists its address.
    context = ssl.create_default_context(cafile=ca)
    _PROBE_CONTEXTS[ca] = (version, context)
    return context
