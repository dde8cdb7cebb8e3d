"""systemd's service notification protocol (sd_notify(3)): one datagram per message to the
AF_UNIX socket named by $NOTIFY_SOCKET ('@' = Linux abstract namespace).

Done here with `socket` rather than a library: the protocol is a documented stable interface
of a dozen lines; `sdnotify` on PyPI had its last release in 2017, and `systemd-python` /
`cysystemd` are C extensions built against libsystemd for the same one call.
"""

from __future__ import annotations

import contextlib
import os
import socket

import structlog

log = structlog.get_logger("pgha-operator")

# Read once and removed from the environment (sd_notify's unset_environment): the daemons the
# operator starts (etcd notifies READY itself when it sees NOTIFY_SOCKET) must not inherit them.
_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


class Notifier:
    """Sends to systemd when started by it (Type=notify); does nothing otherwise."""

    def __init__(self, address: str | None, watchdog_usec: int | None) -> None:
        self.address = address
        self.watchdog_usec = watchdog_usec

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        usec: int | None = None
        with contextlib.suppress(ValueError):
            usec = int(env.get("WATCHDOG_USEC", ""))
        watchdog_pid = env.get("WATCHDOG_PID")
        if watchdog_pid and watchdog_pid != str(os.getpid()):
            usec = None  # the watchdog is another process's
        for name in _VARIABLES:
            env.pop(name, None)
        return cls(address, usec if usec and usec > 0 else None)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_seconds(self) -> float | None:
        return None if self.watchdog_usec is None else self.watchdog_usec / 1e6

    def send(self, **fields: str | int) -> bool:
        """notify(READY=1, STATUS="...") -> "READY=1\\nSTATUS=..."; False if not sent."""
        if self.address is None:
            return False
        message = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message, target)
        except OSError as exc:  # systemd gone or restarting: the loops go on regardless
            log.warning("sd_notify failed", socket=self.address, error=str(exc))
            return False
        return True
