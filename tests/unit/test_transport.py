"""shell/clients/transport.py answers and fails the way the clients expect from requests."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from pgha_operator.shell.clients import ComponentError, transport
from pgha_operator.shell.clients.patroni import PatroniClient
from pgha_operator.shell.clients.tls import ClientTls
from tests.tls_lab import LabCa


class Handler(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        sent = self.rfile.read(length).decode() if length else ""
        status = 503 if "replica" in self.path else 200
        body = json.dumps(
            {"path": self.path, "auth": self.headers.get("Authorization"), "body": sent}
        ).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_get_and_post_answer_like_requests(server: str) -> None:
    got = transport.get(f"{server}/primary", auth=("patroni", "pw"), timeout=2)
    assert got.status_code == 200 and got.json()["path"] == "/primary"
    assert got.json()["auth"] == "Basic cGF0cm9uaTpwdw=="  # patroni:pw
    posted = transport.post(f"{server}/v3/cluster/member/list", json={}, timeout=2)
    assert posted.json()["body"] == "{}"
    replica = transport.get(f"{server}/replica", timeout=2)
    assert replica.status_code == 503 and "replica" in replica.text
    with pytest.raises(requests.HTTPError) as err:
        replica.raise_for_status()
    assert err.value.response.status_code == 503


def test_no_answer_fails_with_requests_types() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(requests.ConnectionError, match="refused"):
        transport.get(f"http://127.0.0.1:{port}/health", timeout=1)


def test_a_silent_server_times_out_as_requests_does() -> None:
    with socket.socket() as sock:  # accepts (backlog) but never answers
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        with pytest.raises(requests.Timeout):
            transport.get(f"http://127.0.0.1:{sock.getsockname()[1]}/", timeout=0.2)


def test_status_of_and_the_fencers_probe(server: str) -> None:
    assert transport.status_of(f"{server}/primary", timeout=2) == 200
    assert transport.status_of(f"{server}/replica", timeout=2) == 503
    assert PatroniClient(f"{server}/leader", timeout=2).is_primary() is True
    assert PatroniClient(f"{server}/replica", timeout=2).is_primary() is False


def test_status_of_without_an_answer() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(requests.ConnectionError, match="refused"):
        transport.status_of(f"{refused}/primary", timeout=1)
    with pytest.raises(ComponentError, match="primary: connection refused"):
        PatroniClient(refused, timeout=1).is_primary()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        silent = f"http://127.0.0.1:{sock.getsockname()[1]}"
        with pytest.raises(requests.Timeout):
            transport.status_of(f"{silent}/primary", timeout=0.2)
        with pytest.raises(ComponentError, match="timed out"):
            PatroniClient(silent, timeout=0.2).is_primary()


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, LabCa]]:
    """An https server that, like etcd, requires a client certificate of its CA."""
    ca = LabCa.create(tmp_path / "ca")
    server_files = ca.issue("server", ("127.0.0.1",))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(server_files.cert, server_files.key)
    context.load_verify_locations(ca.cert_path)
    context.verify_mode = ssl.CERT_REQUIRED
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.socket = context.wrap_socket(srv.socket, server_side=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{srv.server_address[1]}", ca
    srv.shutdown()
    srv.server_close()


def test_https_verifies_the_server_and_presents_the_client_certificate(
    tls_server: tuple[str, LabCa], tmp_path: Path
) -> None:
    url, ca = tls_server
    operator = ca.issue("operator", server=False)
    assert transport.get(f"{url}/health", timeout=2, tls=operator).status_code == 200
    posted = transport.post(f"{url}/v3/kv/range", json={}, timeout=2, tls=operator)
    assert posted.json()["body"] == "{}"
    # Without the operator's files (system CAs, no certificate), or with a certificate of
    # another CA: refused, as a requests error.
    other = LabCa.create(tmp_path / "other")
    for tls in (None, ClientTls(ca.cert_path, *_pair(other.issue("stranger", server=False)))):
        with pytest.raises(requests.ConnectionError):
            transport.get(f"{url}/health", timeout=2, tls=tls)
    # A server whose certificate the cluster's CA did not sign is not trusted.
    with pytest.raises(requests.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        transport.get(f"{url}/health", timeout=2, tls=ClientTls(other.cert_path, *_pair(operator)))


def _pair(tls: ClientTls) -> tuple[str, str]:
    return tls.cert, tls.key
