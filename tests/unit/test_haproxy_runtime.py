"""The HAProxy runtime API client against a Unix socket that answers like HAProxy."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgha_operator.shell import fence_routing
from pgha_operator.shell.clients import ComponentError
from pgha_operator.shell.clients.haproxy_runtime import mark_down
from pgha_operator.shell.fence_routing import route_to_new_leader


@pytest.fixture
def admin_socket(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """A socket that records each line it gets and answers one empty line per command."""
    path = str(tmp_path / "admin.sock")
    lines: list[str] = []
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    server.settimeout(1.0)

    def serve() -> None:
        try:
            conn, _ = server.accept()
        except OSError:  # no client came (the test expected none)
            return
        with conn:
            line = conn.makefile().readline().strip()
            lines.append(line)
            conn.sendall(b"\n" * len(line.split(";")))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield path, lines
    server.close()  # (an accept that never came ends with it)
    thread.join(timeout=2)


def test_mark_down_sends_one_line_per_backend(admin_socket: tuple[str, list[str]]) -> None:
    path, lines = admin_socket
    mark_down(path, ["primary", "replicas"], "node1")
    assert lines == ["set server primary/node1 health down; set server replicas/node1 health down"]


def test_an_absent_socket_is_a_component_error(tmp_path: Path) -> None:
    with pytest.raises(ComponentError, match="admin.sock"):
        mark_down(str(tmp_path / "admin.sock"), ["primary"], "node1")


class _Sockets:
    """A provider whose load balancer's admin socket is the fixture's."""

    def __init__(self, path: str) -> None:
        self.path = path

    def host_path(self, name: str, path: str) -> str:
        return self.path

    def layout(self, name: str) -> object:
        return type("L", (), {"haproxy_socket": "/run/haproxy/admin.sock"})()


def test_the_member_that_takes_the_key_is_marked_up(admin_socket: tuple[str, list[str]]) -> None:
    path, lines = admin_socket
    answers = iter(["node1", None, "node2"])  # the fenced one, nobody, then the new leader
    new = route_to_new_leader(_Sockets(path), ["haproxy1"], "node1", lambda: next(answers))  # type: ignore[arg-type]
    assert new == "node2"
    assert lines == ["set server primary/node2 health up"]


def test_no_member_takes_the_key_nothing_is_marked(
    admin_socket: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, lines = admin_socket
    monkeypatch.setattr(fence_routing, "NEW_LEADER_WAIT", 0.05)
    assert route_to_new_leader(_Sockets(path), ["haproxy1"], "node1", lambda: None) is None  # type: ignore[arg-type]
    assert lines == []
