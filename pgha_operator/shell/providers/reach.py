"""The peer probe behind the PeerReach capability: a TCP connection tried from one
machine's own network (nspawn: its namespace; ssh: the host itself)."""

from __future__ import annotations

# Exit 0 when the address answered (a refusal is an answer too), 3 when it did not (timeout,
# no route). The timeout counts from the connect, not from the process's start, so a slow
# host never reads as a lost peer.
SCRIPT = """import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), float(sys.argv[3])).close()
except ConnectionRefusedError:
    pass
except OSError:
    sys.exit(3)
"""
SLACK = 5.0  # seconds the probe's process may take beyond its own timeout


def argv(python: str, address: str, port: int, timeout: float) -> list[str]:
    return [python, "-I", "-S", "-c", SCRIPT, address, str(port), str(timeout)]


def result(returncode: int) -> bool | None:
    """True: reached; False: not within the timeout; None: the probe itself failed."""
    return {0: True, 3: False}.get(returncode)
