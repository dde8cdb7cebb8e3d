"""The Patroni client over https: the node's certificate verified against the cluster's CA,
credentials on the unsafe calls only. A fake REST API serves the cluster's real
certificates (issued by shell/state/pki.py) and records every request's Authorization."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pgha_operator.core import spec, topology
from pgha_operator.shell.clients import ComponentError, RealClients
from pgha_operator.shell.clients.patroni import PatroniClient, collect_patroni
from pgha_operator.shell.clients.tls import ClientTls
from pgha_operator.shell.state import pki

REPO = Path(__file__).resolve().parents[2]
AUTH = ("patroni", "Rest-pw")
NODE = "node1"


@dataclass
class Seen:
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, auth


def handler(seen: Seen, name: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            auth = self.headers.get("Authorization")
            seen.requests.append((self.command, self.path, auth))
            unsafe = self.command != "GET"
            status, body = 200, {"role": "primary", "state": "running", "patroni": {"name": name}}
            if self.path == "/cluster":
                body = {"members": [{"name": name, "role": "leader", "state": "running"}]}
            if self.path == "/config":
                body = {"ttl": 30, "loop_wait": 10}
            if unsafe and auth is None:  # as Patroni: 401 without credentials
                status, body = 401, {"error": "no auth header received"}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = _answer

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@dataclass(frozen=True)
class Cluster:
    url: str  # https://<node1's address>:<port>
    tls: ClientTls  # the operator's files: the CA that signed the node's certificate
    seen: Seen


def issue(state: Path) -> tuple[topology.Topology, pki.Issued]:
    (loaded,) = spec.load([REPO / "manifests/demo.yaml"])
    topo = topology.build(loaded.cluster)
    return topo, pki.load_or_issue(state, loaded.cluster, topo, datetime.now(UTC))


@pytest.fixture(scope="module")
def rest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """node1's REST API as Patroni serves it: https with the node's certificate."""
    state = tmp_path_factory.mktemp("state")
    topo, issued = issue(state)
    seen = Seen()
    srv = ThreadingHTTPServer((topo.address(NODE), 0), handler(seen, NODE))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(state / "tls/machines/node1.crt", state / "tls/machines/node1.key")
    srv.socket = context.wrap_socket(srv.socket, server_side=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield Cluster(f"https://{topo.address(NODE)}:{srv.server_address[1]}", issued.client, seen)
    srv.shutdown()
    srv.server_close()


def auth_of(seen: Seen, method: str, path: str) -> list[str | None]:
    return [auth for m, p, auth in seen.requests if (m, p) == (method, path)]


def test_reads_carry_no_credentials_and_changes_do(rest: Cluster) -> None:
    rest.seen.requests.clear()
    client = RealClients(rest.tls).patroni(rest.url, AUTH, timeout=2)
    assert client.is_primary() is True
    assert client.alive() is True
    facts = collect_patroni([rest.url], rest.tls, timeout=2)
    assert facts.reachable, facts.error
    client.switchover(NODE, "node2")
    client.restart()
    client.reinitialize()
    client.patch_config({"ttl": 30})
    gets = [auth for method, _, auth in rest.seen.requests if method == "GET"]
    assert len(gets) >= 5  # /primary twice, /patroni, /cluster, /config
    assert gets == [None] * len(gets)
    basic = "Basic cGF0cm9uaTpSZXN0LXB3"  # patroni:Rest-pw
    for method, path in [
        ("POST", "/switchover"),
        ("POST", "/restart"),
        ("POST", "/reinitialize"),
        ("PATCH", "/config"),
    ]:
        assert auth_of(rest.seen, method, path) == [basic], (method, path)


def test_an_unsafe_call_without_credentials_is_refused(rest: Cluster) -> None:
    client = PatroniClient(rest.url, None, timeout=2, tls=rest.tls)
    with pytest.raises(ComponentError) as err:
        client.switchover(NODE)
    assert err.value.status == 401


def test_observation_through_real_clients_sends_no_credentials(rest: Cluster) -> None:
    rest.seen.requests.clear()
    facts = RealClients(rest.tls).observe_patroni([rest.url])
    assert facts.reachable, facts.error
    assert rest.seen.requests and all(auth is None for _, _, auth in rest.seen.requests)


def test_a_certificate_from_another_ca_is_refused(rest: Cluster, tmp_path: Path) -> None:
    _, other = issue(tmp_path)  # another cluster's CA
    stranger = PatroniClient(rest.url, AUTH, timeout=2, tls=other.client)
    with pytest.raises(ComponentError, match="CERTIFICATE_VERIFY_FAILED"):
        stranger.is_primary()
    assert not stranger.alive()
    with pytest.raises(ComponentError, match="CERTIFICATE_VERIFY_FAILED"):
        stranger.switchover(NODE)  # the password never leaves for an unverified server
    facts = collect_patroni([rest.url], other.client, timeout=2)
    assert not facts.reachable and "CERTIFICATE_VERIFY_FAILED" in str(facts.error)


def test_a_name_the_certificate_does_not_carry_is_refused(rest: Cluster) -> None:
    """The same server reached as 127.0.0.1 (not one of node1's names): hostname check."""
    port = rest.url.rsplit(":", 1)[1]
    wrong = PatroniClient(f"https://127.0.0.1:{port}", timeout=2, tls=rest.tls)
    with pytest.raises(ComponentError):
        wrong.is_primary()


def test_plain_http_to_the_tls_port_gets_no_answer(rest: Cluster) -> None:
    plain = PatroniClient(rest.url.replace("https://", "http://"), timeout=2, tls=rest.tls)
    with pytest.raises(ComponentError):
        plain.is_primary()
