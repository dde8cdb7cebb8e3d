"""The SSH transport (paramiko): commands, atomic file writes through SFTP, systemd services.

One connection per machine, opened on first use and reused; reopened (with retries and
backoff, ssh_connect.py) when it drops. Host keys are pinned: the server's key must already be in the
known_hosts file the operator was given (recorded at machine creation, or named in the
manifest); an unknown or changed key is refused, never accepted automatically.

Commands and file operations run as root: directly when the login user is root, through
`sudo -n` otherwise (configuration lives under /etc, units under /etc/systemd/system).
"""

from __future__ import annotations

import contextlib
import posixpath
import select
import shlex
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import paramiko

from pgha_operator.shell.hosts.base import CommandResult, HostError
from pgha_operator.shell.hosts.ssh_connect import (
    HostKeyChanged,
    HostKeyUnknown,
    SshAuthFailed,
    SshTarget,
    SshUnreachable,
    connect,
    describe,
)
from pgha_operator.shell.hosts.systemd import SystemdService, installed_services

T = TypeVar("T")
_TAIL_LINES = 20


def _tail(text: str, lines: int = _TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


class SshHost:
    """One machine reached over SSH. Paths are absolute paths on that machine."""

    def __init__(self, target: SshTarget, cluster: str) -> None:
        self.target = target
        self.cluster = cluster  # whose services this host manages (its units are named so)
        self.name = target.name
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._lock = threading.RLock()  # one connect at a time; SFTP is not thread-safe
        self._ids: dict[str, tuple[int, int]] = {}

    def __repr__(self) -> str:
        return f"SshHost({self.name!r}, {self.target.where})"

    @property
    def is_root(self) -> bool:
        return self.target.user == "root"

    # ---- connection

    def connect(self) -> paramiko.SSHClient:
        """The live connection, opened (with retries) when there is none."""
        with self._lock:
            client = self._client
            transport = client.get_transport() if client else None
            if client is not None and transport is not None and transport.is_active():
                return client
            self.close()
            self._client = connect(self.target)
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._sftp is not None:
                with contextlib.suppress(Exception):
                    self._sftp.close()
                self._sftp = None
            if self._client is not None:
                with contextlib.suppress(Exception):
                    self._client.close()
                self._client = None

    def _session(self, what: str, fn: Callable[[paramiko.SSHClient], T]) -> T:
        """fn(client), reconnecting once when the connection dropped before fn could start
        (a machine that rebooted, an idle connection cut)."""
        client = self.connect()
        try:
            return fn(client)
        except _ChannelOpenFailed as exc:
            self.close()
            client = self.connect()
            try:
                return fn(client)
            except _ChannelOpenFailed as again:
                raise SshUnreachable(
                    f"{self.name}: {what}: connection to {self.target.where} lost: {again}"
                ) from exc.__cause__

    def _open_channel(self, client: paramiko.SSHClient) -> paramiko.Channel:
        transport = client.get_transport()
        if transport is None or not transport.is_active():
            raise _ChannelOpenFailed("not connected")
        try:
            return transport.open_session(timeout=self.target.connect_timeout)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise _ChannelOpenFailed(describe(exc)) from exc

    # ---- commands

    def _wrap(self, argv: Sequence[str], user: str | None) -> str:
        """The command line the remote shell runs: as root (sudo when we log in as another
        user), or as `user` (from `/`, which every user can read)."""
        cmd = shlex.join(argv)
        if user is None or user == "root":
            return cmd if self.is_root else f"sudo -n -- {cmd}"
        if user == self.target.user:
            return f"cd / && {cmd}"
        if self.is_root:
            return f"cd / && runuser -u {shlex.quote(user)} -- {cmd}"
        return f"cd / && sudo -n -u {shlex.quote(user)} -- {cmd}"

    def exec_raw(
        self, command: str, *, timeout: float = 30, input: bytes | None = None
    ) -> tuple[int, bytes, bytes]:
        """Run a remote shell command line: (exit status, stdout, stderr)."""

        def go(client: paramiko.SSHClient) -> tuple[int, bytes, bytes]:
            chan = self._open_channel(client)
            try:
                return self._communicate(chan, command, timeout, input)
            finally:
                chan.close()

        return self._session(f"running {command!r}", go)

    def _communicate(
        self, chan: paramiko.Channel, command: str, timeout: float, input: bytes | None
    ) -> tuple[int, bytes, bytes]:
        deadline = time.monotonic() + timeout
        try:
            chan.exec_command(command)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise _ChannelOpenFailed(describe(exc)) from exc
        if input:
            chan.sendall(input)
        chan.shutdown_write()
        out: list[bytes] = []
        err: list[bytes] = []
        while True:
            while chan.recv_ready():
                out.append(chan.recv(65536))
            while chan.recv_stderr_ready():
                err.append(chan.recv_stderr(65536))
            # OpenSSH may send the exit status before the last output: done only once the
            # server has also closed its output (EOF), or the channel is gone.
            drained = not chan.recv_ready() and not chan.recv_stderr_ready()
            if chan.exit_status_ready() and (chan.eof_received or chan.closed) and drained:
                break
            if chan.closed and not chan.exit_status_ready():
                raise HostError(f"{self.name}: connection lost while running {command!r}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise HostError(f"{self.name}: {command} timed out after {timeout:g} s")
            select.select([chan], [], [], min(remaining, 0.05))
        return chan.recv_exit_status(), b"".join(out), b"".join(err)

    def run(
        self,
        argv: Sequence[str],
        *,
        user: str | None = None,
        timeout: float = 30,
        check: bool = True,
        input: str | None = None,
    ) -> CommandResult:
        argv = tuple(argv)
        if not argv:
            raise ValueError("run: empty argv")
        code, out, err = self.exec_raw(
            self._wrap(argv, user), timeout=timeout, input=None if input is None else input.encode()
        )
        result = CommandResult(
            argv, code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
        )
        if check and not result.ok:
            as_user = f" as {user}" if user else ""
            detail = _tail(result.stderr) or _tail(result.stdout)
            raise HostError(
                f"{self.name}: {shlex.join(argv)}{as_user} failed with exit code "
                f"{result.returncode}" + (f":\n{detail}" if detail else "")
            )
        return result

    # ---- files

    def _sftp_client(self) -> paramiko.SFTPClient:
        def opener(client: paramiko.SSHClient) -> paramiko.SFTPClient:
            try:
                return client.open_sftp()
            except (paramiko.SSHException, EOFError, OSError) as exc:
                raise _ChannelOpenFailed(describe(exc)) from exc

        if self._sftp is not None:
            chan = self._sftp.get_channel()
            if chan is not None and not chan.closed and chan.get_transport().is_active():
                return self._sftp
        self._sftp = self._session("opening SFTP", opener)
        return self._sftp

    @contextlib.contextmanager
    def _sftp_op(self, what: str) -> Iterator[paramiko.SFTPClient]:
        with self._lock:
            try:
                yield self._sftp_client()
            except HostError:
                raise
            except (OSError, paramiko.SSHException, EOFError) as exc:
                raise HostError(f"{self.name}: {what}: {describe(exc)}") from exc

    def read(self, path: str) -> bytes | None:
        if not self.is_root:
            code, out, err = self.exec_raw(
                f'sudo -n -- sh -c \'if [ -e "$1" ]; then exec cat -- "$1"; else exit 3; fi\' '
                f"sh {shlex.quote(path)}"
            )
            if code == 3:
                return None
            if code != 0:
                raise HostError(f"{self.name}: cannot read {path}: {_tail(err.decode())}")
            return out
        with self._sftp_op(f"cannot read {path}") as sftp:
            try:
                with sftp.open(path, "rb") as f:
                    return f.read()
            except FileNotFoundError:
                return None

    def _owner_ids(self, owner: str | None) -> tuple[int, int]:
        """uid/gid on the machine for "user" or "user:group"; None is root."""
        owner = owner or "root"
        if owner not in self._ids:
            user, _, group = owner.partition(":")
            res = self.run(["id", "-u", user], check=False)
            if not res.ok:
                raise HostError(f"{self.name}: no such user: {user!r}")
            if group:
                got = self.run(["getent", "group", group], check=False)
                if not got.ok:
                    raise HostError(f"{self.name}: no such group: {group!r}")
                gid = int(got.stdout.split(":")[2])
            else:
                gid = int(self.run(["id", "-g", user]).stdout.strip())
            self._ids[owner] = (int(res.stdout.strip()), gid)
        return self._ids[owner]

    def _matches(self, path: str, data: bytes, mode: int, uid: int, gid: int) -> bool:
        res = self.run(["stat", "-c", "%F|%a|%u|%g|%s", "--", path], check=False)
        if not res.ok:
            return False
        kind, got_mode, got_uid, got_gid, size = res.stdout.strip().split("|")
        if kind != "regular file" and kind != "regular empty file":
            return False
        if (int(got_mode, 8), int(got_uid), int(got_gid), int(size)) != (mode, uid, gid, len(data)):
            return False
        return self.read(path) == data

    def write(self, path: str, data: bytes, *, mode: int = 0o644, owner: str | None = None) -> bool:
        """Atomically replace `path` (a temp file beside it, then rename), with that mode and
        owner (None = root); False, nothing written, when all three already match."""
        if not posixpath.isabs(path):
            raise ValueError(f"path must be absolute: {path!r}")
        uid, gid = self._owner_ids(owner)
        if self._matches(path, data, mode, uid, gid):
            return False
        parent = posixpath.dirname(path)
        self.ensure_parent(parent)
        if self.is_root:
            self._write_sftp(path, data, mode, uid, gid)
        else:
            self._write_sudo(path, data, mode, uid, gid)
        return True

    def _write_sftp(self, path: str, data: bytes, mode: int, uid: int, gid: int) -> None:
        tmp = f"{posixpath.dirname(path)}/.{posixpath.basename(path)}.{uuid.uuid4().hex[:8]}.tmp"
        with self._sftp_op(f"cannot write {path}") as sftp:
            try:
                with sftp.open(tmp, "wb") as f:
                    f.set_pipelined(True)
                    f.write(data)
                    f.chmod(mode)
                    f.chown(uid, gid)
                sftp.posix_rename(tmp, path)
            except BaseException:
                with contextlib.suppress(Exception):
                    sftp.remove(tmp)
                raise

    def _write_sudo(self, path: str, data: bytes, mode: int, uid: int, gid: int) -> None:
        """Upload as the login user to its own temp file, then root installs it beside the
        target and renames it into place."""
        staged = f"/tmp/.pgha-{uuid.uuid4().hex}"
        with self._sftp_op(f"cannot stage {path}") as sftp, sftp.open(staged, "wb") as f:
            f.set_pipelined(True)
            f.chmod(0o600)
            f.write(data)
        script = (
            'set -e; t="$(dirname "$2")/.$(basename "$2").$$.tmp"; '
            'trap \'rm -f "$1" "$t"\' EXIT; '
            'install -m "$3" -o "$4" -g "$5" -- "$1" "$t"; mv -f -- "$t" "$2"'
        )
        argv = ["sh", "-c", script, "sh", staged, path, f"{mode:o}", str(uid), str(gid)]
        try:
            self.run(argv)
        finally:
            self.exec_raw(f"rm -f {shlex.quote(staged)}")

    def ensure_parent(self, directory: str) -> None:
        """Create missing parents as 0755 (never tighter: postgres must traverse them)."""
        self.run(["sh", "-c", '[ -d "$1" ] || install -d -m 0755 -- "$1"', "sh", directory])

    def ensure_dir(self, path: str, mode: int = 0o755, owner: str | None = None) -> bool:
        uid, gid = self._owner_ids(owner)
        res = self.run(["stat", "-c", "%F %a %u %g", "--", path], check=False)
        if res.ok and res.stdout.split()[-3:] == [f"{mode:o}", str(uid), str(gid)]:
            return False
        self.ensure_parent(posixpath.dirname(path.rstrip("/")) or "/")
        self.run(["install", "-d", "-m", f"{mode:o}", "-o", str(uid), "-g", str(gid), path])
        return True

    def remove(self, path: str) -> None:
        self.run(["rm", "-rf", "--", path])

    # ---- services

    def service(self, name: str) -> SystemdService:
        return SystemdService(self, name, self.cluster)

    def installed_services(self) -> list[str]:
        return installed_services(self, self.cluster)


class _ChannelOpenFailed(Exception):
    """The connection died before a command or SFTP session could start: safe to retry."""


__all__ = [
    "HostKeyChanged",
    "HostKeyUnknown",
    "SshAuthFailed",
    "SshHost",
    "SshTarget",
    "SshUnreachable",
]
