"""The Host and Service ports: what every transport (local, ssh) offers the operator."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from pgha_operator.core.services import ServiceDefinition, ServiceState

__all__ = ["CommandResult", "Host", "HostError", "Service", "ServiceDefinition", "ServiceState"]


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class HostError(Exception):
    """A command or file operation on a host failed; the message names the host and what."""


class Service(Protocol):
    name: str

    def state(self) -> ServiceState: ...
    def pid(self) -> int | None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def reload(self) -> None: ...
    def restart(self) -> None: ...
    def reread_definition(self) -> None:
        """Make the service manager load the definition file as it is now on disk (systemd:
        daemon-reload when it differs); the running process is left alone."""
        ...


class Host(Protocol):
    """One machine. Paths are absolute paths as seen on that machine."""

    name: str

    def run(
        self,
        argv: Sequence[str],
        *,
        user: str | None = None,
        timeout: float = 30,
        check: bool = True,
        input: str | None = None,
    ) -> CommandResult: ...
    def read(self, path: str) -> bytes | None: ...
    def write(
        self, path: str, data: bytes, *, mode: int = 0o644, owner: str | None = None
    ) -> bool: ...
    def remove(self, path: str) -> None: ...
    def service(self, name: str) -> Service: ...
    def installed_services(self) -> list[str]:
        """Names of the services the operator installed on this machine (for teardown)."""
        ...
