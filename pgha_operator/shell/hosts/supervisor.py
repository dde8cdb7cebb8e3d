"""The local host's process supervisor: one daemon per definition file
(<root>/etc/pgha/services/<name>.json), a pid file recording pid and start time, a log.

All state lives in the machine's files, so a fresh object, or a restarted operator, adopts a
running service. The JSON format of a definition is servicedef's; the supervisor only checks
what it needs to run it.
"""

from __future__ import annotations

import json
import os
import pwd
import shlex
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pgha_operator.core.services import definition_from_json, definition_to_json
from pgha_operator.shell.hosts import procfs
from pgha_operator.shell.hosts.base import HostError, ServiceDefinition, ServiceState
from pgha_operator.shell.hosts.users import current_user, passwd, setpriv, tail

if TYPE_CHECKING:
    from pgha_operator.shell.hosts.local import LocalHost

TAG_VAR = "PGHA_MACHINE"
SERVICE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# How long start() watches a fresh process before declaring it started.
SPAWN_GRACE = 0.3


def check_definition(d: ServiceDefinition) -> None:
    """Raise ValueError for a definition the supervisor cannot run."""
    if not d.argv or not all(isinstance(a, str) and a for a in d.argv):
        raise ValueError("'argv' must be a non-empty list of non-empty strings")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in d.env.items()):
        raise ValueError("'env' must map strings to strings")
    if d.cwd is not None and not os.path.isabs(d.cwd):
        raise ValueError(f"'cwd' must be absolute: {d.cwd!r}")
    if d.reload_signal is not None:
        procfs.signal_number(d.reload_signal)
    if isinstance(d.stop_timeout, bool) or not d.stop_timeout > 0:
        raise ValueError("'stop_timeout' must be a positive number")


@dataclass(frozen=True)
class _PidRecord:
    pid: int
    starttime: int


_LOCKS: dict[str, threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock_for(pid_path: str) -> threading.RLock:
    # One lock per pid file, shared by every LocalService object of this process, so two
    # threads cannot both see "not running" and start two copies.
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(pid_path, threading.RLock())


def _reap(proc: subprocess.Popen[bytes], exited: threading.Event) -> None:
    # A child that dies while the operator runs would stay a zombie without this wait.
    proc.wait()
    exited.set()


class LocalService:
    """A daemon of a LocalHost, defined by <root>/etc/pgha/services/<name>.json.

    All state lives in the machine's files (the pid file records pid and start time), so a
    fresh object, or a restarted operator, adopts a running service."""

    def __init__(self, host: LocalHost, name: str) -> None:
        if not name or "/" in name or name.startswith(".") or "\0" in name:
            raise ValueError(f"bad service name: {name!r}")
        self.host = host
        self.name = name

    def __repr__(self) -> str:
        return f"LocalService({self.host.name!r}, {self.name!r})"

    @property
    def definition_path(self) -> str:
        return os.path.join(self.host.services_dir, f"{self.name}.json")

    @property
    def pid_path(self) -> str:
        return os.path.join(self.host.run_dir, f"{self.name}.pid")

    @property
    def log_path(self) -> str:
        return os.path.join(self.host.log_dir, f"{self.name}.log")

    def _err(self, what: str) -> HostError:
        return HostError(f"{self.host.name}: service {self.name}: {what}")

    def definition(self) -> ServiceDefinition:
        raw = self.host.read(self.definition_path)
        if raw is None:
            raise self._err(f"no definition at {self.definition_path}")
        try:
            d = definition_from_json(raw.decode())
            check_definition(d)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            # servicedef parses without validating: turn any bad file into one clear error.
            raise self._err(f"bad definition {self.definition_path}: {e!r}") from e
        return d

    # ---- pid file

    def _record(self) -> _PidRecord | None | Literal[False]:
        """The pid file: a record, None when absent, False when unreadable garbage."""
        raw = self.host.read(self.pid_path)
        if raw is None:
            return None
        try:
            obj = json.loads(raw)
            return _PidRecord(int(obj["pid"]), int(obj["starttime"]))
        except (ValueError, KeyError, TypeError):
            return False

    def _running(self) -> _PidRecord | None:
        rec = self._record()
        if isinstance(rec, _PidRecord) and procfs.alive(rec.pid, rec.starttime):
            return rec
        return None

    def state(self) -> ServiceState:
        rec = self._record()
        if rec is None:
            return ServiceState.STOPPED
        if isinstance(rec, _PidRecord) and procfs.alive(rec.pid, rec.starttime):
            return ServiceState.RUNNING
        return ServiceState.FAILED

    def pid(self) -> int | None:
        rec = self._running()
        return None if rec is None else rec.pid

    # ---- control

    def start(self) -> None:
        with _lock_for(self.pid_path):
            self._start()

    def _start(self) -> None:
        if self._running() is not None:
            return
        d = self.definition()
        pw, prefix = self._identity(d)
        env = {
            "PATH": SERVICE_PATH,
            "LANG": "C.UTF-8",
            "HOME": pw.pw_dir,
            "USER": pw.pw_name,
            "LOGNAME": pw.pw_name,
            **d.env,
            TAG_VAR: self.host.tag,
        }
        self.host.ensure_dir(self.host.run_dir)
        self.host.ensure_dir(self.host.log_dir)
        proc, log_start = self._spawn(d, prefix + list(d.argv), env, pw)
        # Read the start time before the reaper may wait(): until then even a child that
        # already died is a zombie whose /proc entry still exists.
        starttime = procfs.proc_starttime(proc.pid)
        exited = threading.Event()
        threading.Thread(
            target=_reap, args=(proc, exited), name=f"pgha-reap-{self.name}", daemon=True
        ).start()
        if starttime is None:  # impossible for an unreaped child; be explicit anyway
            raise self._err("vanished right after start")
        record = json.dumps({"pid": proc.pid, "starttime": starttime}, sort_keys=True) + "\n"
        self.host.write(self.pid_path, record.encode())
        if exited.wait(SPAWN_GRACE):
            # The pid file stays: state() now says FAILED, as for any crash.
            raise self._err(
                f"exited with code {proc.returncode} right after start; log "
                f"{self.log_path}:\n{self._log_tail(log_start)}"
            )

    def _identity(self, d: ServiceDefinition) -> tuple[pwd.struct_passwd, list[str]]:
        """Who the daemon runs as, and the argv prefix that switches to that user."""
        if d.user is None or d.user == current_user():
            return pwd.getpwuid(os.geteuid()), []
        if os.geteuid() != 0:
            raise self._err(f"cannot run as {d.user}: the operator is not root")
        try:
            pw = passwd(d.user)
        except HostError as e:
            raise self._err(str(e)) from None
        return pw, setpriv(pw)

    def _spawn(
        self, d: ServiceDefinition, argv: list[str], env: dict[str, str], pw: pwd.struct_passwd
    ) -> tuple[subprocess.Popen[bytes], int]:
        """Start the daemon with its output appended to its log; returns the process and
        where in the log its output begins."""
        with self.host._oserror(f"cannot open log {self.log_path}"):
            log_fd = os.open(
                self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640
            )
        try:
            if os.geteuid() == 0:
                # The daemon may reopen its log (e.g. on reload): let its user write it.
                os.fchown(log_fd, pw.pw_uid, pw.pw_gid)
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            os.write(log_fd, f"--- pgha {stamp}: starting {shlex.join(d.argv)}\n".encode())
            log_start = os.fstat(log_fd).st_size
            try:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log_fd,
                    stderr=log_fd,
                    env=env,
                    cwd=d.cwd or "/",
                    close_fds=True,
                    # Own session: the operator's terminal, process group or a `timeout`
                    # wrapper must not take the daemon down with it.
                    start_new_session=True,
                )
            except OSError as e:
                os.write(log_fd, f"--- pgha: cannot start: {e}\n".encode())
                raise self._err(f"cannot start {shlex.join(d.argv)}: {e}") from e
        finally:
            os.close(log_fd)
        return proc, log_start

    def _log_tail(self, offset: int = 0) -> str:
        try:
            with open(self.log_path, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(offset, size - 8192))
                return tail(f.read().decode("utf-8", "replace"))
        except OSError:
            return ""

    def stop(self) -> None:
        with _lock_for(self.pid_path):
            self._stop()

    def _stop(self) -> None:
        rec = self._record()
        if rec is None:
            return
        if isinstance(rec, _PidRecord) and procfs.alive(rec.pid, rec.starttime):
            try:
                timeout = self.definition().stop_timeout
            except HostError:
                timeout = ServiceDefinition.stop_timeout
            self._terminate(rec, timeout)
        self.host.remove(self.pid_path)

    def _terminate(self, rec: _PidRecord, timeout: float) -> None:
        st = procfs.proc_stat(rec.pid)
        # Only a group we verified to be led by our process is signalled as a group.
        group = st is not None and st.pgrp == rec.pid
        procfs.signal_exact(rec.pid, rec.starttime, signal.SIGTERM)
        if group:
            procfs.killpg(rec.pid, signal.SIGTERM)
        if not self._wait_gone(rec, timeout):
            procfs.signal_exact(rec.pid, rec.starttime, signal.SIGKILL)
            if group:
                procfs.killpg(rec.pid, signal.SIGKILL)
            if not self._wait_gone(rec, 5):
                raise self._err(f"pid {rec.pid} survived SIGKILL")
        if group:
            # Children left behind in the group die with their leader, as under systemd.
            procfs.killpg(rec.pid, signal.SIGKILL)

    @staticmethod
    def _wait_gone(rec: _PidRecord, timeout: float) -> bool:
        return not procfs.wait_gone({rec.pid: rec.starttime}, timeout)

    def reload(self) -> None:
        d = self.definition()
        if d.reload_signal is None:
            self.restart()
            return
        rec = self._running()
        if rec is None or not procfs.signal_exact(
            rec.pid, rec.starttime, procfs.signal_number(d.reload_signal)
        ):
            raise self._err("cannot reload: not running")

    def restart(self) -> None:
        with _lock_for(self.pid_path):
            self._stop()
            self._start()

    def reread_definition(self) -> None:
        return None  # the supervisor reads the definition at each start


def write_definition(host: LocalHost, d: ServiceDefinition) -> bool:
    """Write a service's definition file where LocalService reads it; False if unchanged."""
    return host.write(host.service(d.name).definition_path, definition_to_json(d).encode())
