"""Opening an SSH connection (paramiko) to one machine, with pinned host keys: an unknown or
changed key is refused, never accepted automatically; an unreachable machine is retried with
backoff, wrong keys are not."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

import paramiko

from pgha_operator.shell.hosts.base import HostError


class SshUnreachable(HostError):
    """The machine did not answer (refused, timed out, no route) after every retry."""


class SshAuthFailed(HostError):
    """The server refused our key: a configuration problem, not retried."""


class HostKeyUnknown(HostError):
    """The server's key is not pinned in known_hosts: refused, never accepted automatically."""


class HostKeyChanged(HostError):
    """The server presented a different key than the pinned one: refused."""


@dataclass(frozen=True)
class SshTarget:
    """How to reach one machine."""

    name: str  # the machine's name, for messages
    address: str
    key_file: str
    known_hosts: str
    user: str = "root"
    port: int = 22
    connect_timeout: float = 10.0
    retries: int = 3  # connection attempts before the machine counts as unreachable
    retry_delay: float = 1.0  # doubled after each failed attempt

    @property
    def where(self) -> str:
        return f"{self.user}@{self.address}:{self.port}"

    @property
    def known_hosts_name(self) -> str:
        """How OpenSSH (and paramiko) name this server in known_hosts."""
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"


class _PinnedKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Never accept an unknown key (paramiko's RejectPolicy, with our own error)."""

    def __init__(self, target: SshTarget) -> None:
        self.target = target

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        raise HostKeyUnknown(
            f"{self.target.name}: the host key of {hostname} ({key.get_name()} "
            f"{key.fingerprint}) is not in {self.target.known_hosts}; it is never accepted "
            "automatically: add the machine's key to that file"
        )


def connect(t: SshTarget) -> paramiko.SSHClient:
    """A connection to the target, retried with backoff; wrong keys are not retried."""
    delay = t.retry_delay
    last: Exception | None = None
    for attempt in range(1, max(1, t.retries) + 1):
        try:
            return connect_once(t)
        except (SshAuthFailed, HostKeyUnknown, HostKeyChanged):
            raise  # wrong keys do not fix themselves: no retry
        except (OSError, paramiko.SSHException, EOFError) as exc:
            last = exc
            if attempt < t.retries:
                time.sleep(delay)
                delay *= 2
    raise SshUnreachable(
        f"{t.name}: cannot reach {t.where} after {t.retries} attempts "
        f"({t.connect_timeout:g} s timeout each): {describe(last)}"
    )


def connect_once(t: SshTarget) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    try:
        client.load_host_keys(t.known_hosts)
    except FileNotFoundError:
        raise HostKeyUnknown(
            f"{t.name}: known_hosts file {t.known_hosts} does not exist; the host key "
            "of every machine must be pinned there"
        ) from None
    except (OSError, paramiko.SSHException) as exc:
        raise HostKeyUnknown(f"{t.name}: cannot read {t.known_hosts}: {exc}") from exc
    client.set_missing_host_key_policy(_PinnedKeyPolicy(t))
    try:
        client.connect(
            t.address,
            port=t.port,
            username=t.user,
            key_filename=t.key_file,
            look_for_keys=False,
            allow_agent=False,
            timeout=t.connect_timeout,
            banner_timeout=t.connect_timeout,
            auth_timeout=t.connect_timeout,
            channel_timeout=t.connect_timeout,
        )
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise HostKeyChanged(
            f"{t.name}: HOST KEY CHANGED for {t.known_hosts_name}: it presented "
            f"{exc.key.get_name()} {exc.key.fingerprint}, {t.known_hosts} pins "
            f"{exc.expected_key.fingerprint}; refusing to connect (a different machine, "
            "or a man in the middle). Fix the entry in that file if the change is expected"
        ) from None
    except paramiko.AuthenticationException as exc:
        client.close()
        raise SshAuthFailed(
            f"{t.name}: authentication failed for {t.where} with key {t.key_file}: {exc}"
        ) from None
    except HostKeyUnknown:
        client.close()
        raise
    except FileNotFoundError as exc:
        client.close()
        raise SshAuthFailed(f"{t.name}: key file {t.key_file} not found") from exc
    except BaseException:
        client.close()
        raise
    transport = client.get_transport()
    if transport is not None:
        transport.set_keepalive(15)
    return client


def describe(exc: BaseException | None) -> str:
    if exc is None:
        return "no attempt made"
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        return "; ".join(f"{addr[0]}:{addr[1]}: {e.strerror}" for addr, e in exc.errors.items())
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
