"""HAProxy's runtime API on its admin socket (`stats socket ... level admin`): the fencer
takes a fenced primary out of the load balancer at once, instead of waiting for the next
health check (until then HAProxy would keep sending new connections to a dead server)."""

from __future__ import annotations

import socket

from pgha_operator.shell.clients.errors import ComponentError

TIMEOUT = 0.2  # seconds: the socket is local, HAProxy answers in microseconds


def run_commands(socket_path: str, commands: list[str], timeout: float = TIMEOUT) -> str:
    """Send `commands` as one line (HAProxy runs them in order, then closes) and return
    its answer. Raises ComponentError naming the socket."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(socket_path)
            sock.sendall(("; ".join(commands) + "\n").encode())
            chunks = []
            while chunk := sock.recv(4096):
                chunks.append(chunk)
    except OSError as exc:
        raise ComponentError(f"HAProxy runtime API {socket_path}: {exc}", url=socket_path) from exc
    return b"".join(chunks).decode(errors="replace")


def mark_down(socket_path: str, backends: list[str], server: str) -> str:
    """Force `server`'s health DOWN in each backend. Its own checks take over again from
    there: a server that answers them comes back UP (`rise`), so this never sticks."""
    return run_commands(socket_path, [f"set server {b}/{server} health down" for b in backends])


def mark_up(socket_path: str, backend: str, server: str) -> str:
    """Force `server`'s health UP in `backend`: what its next check would find (the fencer
    does it for the member that just took the leader key); its checks take over again."""
    return run_commands(socket_path, [f"set server {backend}/{server} health up"])
