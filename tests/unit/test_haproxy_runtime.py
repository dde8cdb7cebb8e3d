"""The HAProxy runtime API client against a Unix socket that answers like HAProxy."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgha_operator.shell.clients import ComponentError
from pgha_operator.shell.clients.haproxy_runtime import mark_down


@pytest.fixture
def admin_socket(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """A socket that records each line it gets and answers one empty line per command."""
    path = str(tmp_path / "admin.sock")
    lines: list[str] = []
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            line = conn.makefile().readline().strip()
            lines.append(line)
            conn.sendall(b"\n" * len(line.split(";")))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield path, lines
    thread.join(timeout=2)
    server.close()


def test_mark_down_sends_one_line_per_backend(admin_socket: tuple[str, list[str]]) -> None:
    path, lines = admin_socket
    mark_down(path, ["primary", "replicas"], "node1")
    assert lines == ["set server primary/node1 health down; set server replicas/node1 health down"]


def test_an_absent_socket_is_a_component_error(tmp_path: Path) -> None:
    with pytest.raises(ComponentError, match="admin.sock"):
        mark_down(str(tmp_path / "admin.sock"), ["primary"], "node1")
