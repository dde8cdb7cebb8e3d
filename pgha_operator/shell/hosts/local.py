"""The local transport: a machine is a directory on this computer, commands are subprocesses,
and services run under a small process supervisor (pid files and logs inside the machine).

Every process of a machine carries `PGHA_MACHINE=<tag>` in its environment. That, plus the
pid files, is the only way this module ever finds something to signal: never a process name.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

from pgha_operator.core.services import definition_from_json, definition_to_json
from pgha_operator.shell.hosts.base import CommandResult, HostError, ServiceDefinition, ServiceState

TAG_VAR = "PGHA_MACHINE"
SERVICE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# How long start() watches a fresh process before declaring it started.
SPAWN_GRACE = 0.3
_POLL = 0.05
_TAIL_LINES = 20


# --------------------------------------------------------------------------------------------
# /proc helpers


class _Stat(NamedTuple):
    state: str
    ppid: int
    pgrp: int
    starttime: int


def _proc_stat(pid: int) -> _Stat | None:
    """Fields of /proc/PID/stat, or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm (field 2) may contain spaces and parentheses: split after its last ')'.
    rest = data[data.rindex(b")") + 2 :].split()
    # rest[0] is field 3; starttime is field 22.
    return _Stat(rest[0].decode(), int(rest[1]), int(rest[2]), int(rest[19]))


def proc_starttime(pid: int) -> int | None:
    st = _proc_stat(pid)
    return None if st is None else st.starttime


def _alive(pid: int, starttime: int | None = None) -> bool:
    """A live process (zombies are dead: PID 1 here does not reap orphans, so a dead daemon
    can stay a zombie forever) whose start time matches when given (a reused pid is not it)."""
    st = _proc_stat(pid)
    if st is None or st.state in ("Z", "X", "x"):
        return False
    return starttime is None or st.starttime == starttime


def _signal_exact(pid: int, starttime: int, sig: int) -> bool:
    """Signal pid only if it is still the process that started at `starttime`.

    A pidfd pins the process: after the start-time check it cannot be swapped for another
    one that reused the pid. Returns False when the process is gone."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    try:
        if proc_starttime(pid) != starttime:
            return False
        signal.pidfd_send_signal(pidfd, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False
    finally:
        os.close(pidfd)


def _killpg(pgrp: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgrp, sig)


def _signal_number(name: str) -> signal.Signals:
    key = name.upper()
    if not key.startswith("SIG"):
        key = "SIG" + key
    try:
        return signal.Signals[key]
    except KeyError:
        raise ValueError(f"unknown signal {name!r}") from None


# --------------------------------------------------------------------------------------------
# users


def _current_user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def _passwd(user: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(user)
    except KeyError:
        raise HostError(f"no such user: {user!r}") from None


def _owner_ids(owner: str | None) -> tuple[int, int]:
    """uid/gid for "user" (its primary group) or "user:group"; None is the operator itself."""
    if owner is None:
        return os.geteuid(), os.getegid()
    user, _, group = owner.partition(":")
    pw = _passwd(user)
    if not group:
        return pw.pw_uid, pw.pw_gid
    try:
        return pw.pw_uid, grp.getgrnam(group).gr_gid
    except KeyError:
        raise HostError(f"no such group: {group!r}") from None


def _setpriv(pw: pwd.struct_passwd) -> list[str]:
    # setpriv execs (no extra process), so the pid we record is the daemon's own pid.
    return [
        "setpriv",
        f"--reuid={pw.pw_uid}",
        f"--regid={pw.pw_gid}",
        "--init-groups",
        "--",
    ]


def _tail(text: str, lines: int = _TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


# --------------------------------------------------------------------------------------------
# service definitions: the JSON format is servicedef's; the supervisor only checks what it needs


def check_definition(d: ServiceDefinition) -> None:
    """Raise ValueError for a definition the supervisor cannot run."""
    if not d.argv or not all(isinstance(a, str) and a for a in d.argv):
        raise ValueError("'argv' must be a non-empty list of non-empty strings")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in d.env.items()):
        raise ValueError("'env' must map strings to strings")
    if d.cwd is not None and not os.path.isabs(d.cwd):
        raise ValueError(f"'cwd' must be absolute: {d.cwd!r}")
    if d.reload_signal is not None:
        _signal_number(d.reload_signal)
    if isinstance(d.stop_timeout, bool) or not d.stop_timeout > 0:
        raise ValueError("'stop_timeout' must be a positive number")


# --------------------------------------------------------------------------------------------
# the host


class LocalHost:
    """One simulated machine: real absolute paths on this computer, processes tagged with
    `PGHA_MACHINE=<tag>` (the tag must be unique per machine; the operator uses its root)."""

    def __init__(self, name: str, root: str, tag: str) -> None:
        if not os.path.isabs(root):
            raise ValueError(f"machine root must be absolute: {root!r}")
        if not tag or "\0" in tag or "\n" in tag:
            raise ValueError(f"bad machine tag: {tag!r}")
        self.name = name
        self.root = os.path.normpath(root)
        self.tag = tag

    def __repr__(self) -> str:
        return f"LocalHost({self.name!r}, root={self.root!r})"

    # paths of the supervisor, inside the machine
    @property
    def services_dir(self) -> str:
        return os.path.join(self.root, "etc/pgha/services")

    @property
    def run_dir(self) -> str:
        return os.path.join(self.root, "run/pgha")

    @property
    def log_dir(self) -> str:
        return os.path.join(self.root, "var/log/pgha")

    def _ids(self, owner: str | None) -> tuple[int, int]:
        try:
            return _owner_ids(owner)
        except HostError as e:
            raise HostError(f"{self.name}: {e}") from None

    @contextlib.contextmanager
    def _oserror(self, what: str) -> Iterator[None]:
        try:
            yield
        except OSError as e:
            raise HostError(f"{self.name}: {what}: {e}") from e

    # ---- commands

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
        cmd = list(argv)
        env = dict(os.environ)
        # Whatever a command leaves behind (e.g. `pg_ctl start`) belongs to this machine.
        env[TAG_VAR] = self.tag
        cwd: str | None = None
        as_user = ""
        if user is not None and user != _current_user():
            if os.geteuid() != 0:
                raise HostError(f"{self.name}: cannot run {shlex.join(argv)} as {user}: not root")
            pw = _passwd(user)
            cmd = _setpriv(pw) + cmd
            env.update(HOME=pw.pw_dir, USER=pw.pw_name, LOGNAME=pw.pw_name)
            # The operator's cwd may be unreachable for that user (a mode-700 home).
            cwd = "/"
            as_user = f" as {user}"
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                cwd=cwd,
                text=True,
                encoding="utf-8",
                errors="replace",
                # Own process group, so a timeout kills the command's children too.
                process_group=0,
            )
        except OSError as e:
            code = 127 if isinstance(e, FileNotFoundError) else 126
            result = CommandResult(argv, code, "", str(e))
        else:
            with proc:
                try:
                    out, err = proc.communicate(input, timeout=timeout)
                except subprocess.TimeoutExpired:
                    _killpg(proc.pid, signal.SIGKILL)
                    proc.kill()
                    # An escaped grandchild may still hold the pipes: do not wait for it.
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.communicate(timeout=2)
                    raise HostError(
                        f"{self.name}: {shlex.join(argv)}{as_user} timed out after {timeout} s"
                    ) from None
            result = CommandResult(argv, proc.returncode, out, err)
        if check and not result.ok:
            detail = _tail(result.stderr) or _tail(result.stdout)
            raise HostError(
                f"{self.name}: {shlex.join(argv)}{as_user} failed with exit code "
                f"{result.returncode}" + (f":\n{detail}" if detail else "")
            )
        return result

    # ---- files

    def read(self, path: str) -> bytes | None:
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise HostError(f"{self.name}: cannot read {path}: {e}") from e

    def write(self, path: str, data: bytes, *, mode: int = 0o644, owner: str | None = None) -> bool:
        """Atomically replace `path`; False (and nothing written) when content, mode and
        owner already match. owner None means the operator's own user."""
        uid, gid = self._ids(owner)
        with self._oserror(f"cannot write {path}"):
            if self._file_matches(path, data, mode, uid, gid):
                return False
            parent = os.path.dirname(path) or "/"
            self._make_dirs(parent)
            fd, tmp = tempfile.mkstemp(
                dir=parent, prefix=f".{os.path.basename(path)}.", suffix=".tmp"
            )
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fchmod(f.fileno(), mode)
                    os.fchown(f.fileno(), uid, gid)
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
            self._fsync_dir(parent)
        return True

    @staticmethod
    def _file_matches(path: str, data: bytes, mode: int, uid: int, gid: int) -> bool:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return False
        if not stat.S_ISREG(st.st_mode) or st.st_size != len(data):
            return False
        if stat.S_IMODE(st.st_mode) != mode or (st.st_uid, st.st_gid) != (uid, gid):
            return False
        with open(path, "rb") as f:
            return f.read() == data

    @staticmethod
    def _fsync_dir(path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @staticmethod
    def _make_dirs(path: str) -> None:
        """Create missing directories as 0755 whatever the umask: a 0700 parent would hide
        everything below it from the postgres user."""
        missing: list[str] = []
        p = path
        while not os.path.isdir(p):
            missing.append(p)
            parent = os.path.dirname(p)
            if parent == p:
                break
            p = parent
        for d in reversed(missing):
            try:
                os.mkdir(d, 0o755)
            except FileExistsError:
                continue
            os.chmod(d, 0o755)

    def ensure_dir(self, path: str, mode: int = 0o755, owner: str | None = None) -> bool:
        """Make `path` a directory with that mode and owner; True when something changed."""
        uid, gid = self._ids(owner)
        changed = False
        with self._oserror(f"cannot create directory {path}"):
            if not os.path.isdir(path):
                self._make_dirs(path)
                changed = True
            st = os.stat(path)
            if stat.S_IMODE(st.st_mode) != mode:
                os.chmod(path, mode)
                changed = True
            if (st.st_uid, st.st_gid) != (uid, gid):
                os.chown(path, uid, gid)
                changed = True
        return changed

    def remove(self, path: str) -> None:
        with self._oserror(f"cannot remove {path}"):
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                return
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(path)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)

    # ---- services and processes

    def service(self, name: str) -> LocalService:
        return LocalService(self, name)

    def _scan(self) -> dict[int, int]:
        """pid -> starttime of every live process of this machine.

        A process belongs to the machine when its environment has our tag, or when it
        descends from such a process: PostgreSQL backends overwrite their environment
        block with the process title, so /proc/PID/environ no longer shows the tag
        (measured: the postmaster keeps it, its children do not)."""
        marker = f"{TAG_VAR}={self.tag}".encode()
        other = f"{TAG_VAR}=".encode()
        me = os.getpid()
        children: dict[int, list[int]] = {}
        starttimes: dict[int, int] = {}
        roots: list[int] = []
        foreign: set[int] = set()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            try:
                st = _proc_stat(pid)
            except (OSError, ValueError, IndexError):
                continue
            if st is None or st.state in ("Z", "X", "x"):
                continue
            starttimes[pid] = st.starttime
            children.setdefault(st.ppid, []).append(pid)
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    env = f.read().split(b"\0")
            except OSError:
                continue  # kernel threads, or not ours to read as a non-root operator
            if marker in env:
                roots.append(pid)
            elif any(e.startswith(other) for e in env):
                foreign.add(pid)  # another machine's process, even if spawned from ours
        found: dict[int, int] = {}
        stack = roots
        while stack:
            pid = stack.pop()
            if pid in found or pid == me or pid in foreign or pid not in starttimes:
                continue
            found[pid] = starttimes[pid]
            stack.extend(children.get(pid, ()))
        return found

    def processes(self) -> list[int]:
        """Every live pid of this machine (tagged, or descending from a tagged process)."""
        return sorted(self._scan())

    def kill_all(self, timeout: float = 10) -> None:
        """SIGKILL every process of the machine (a power cut), until none is left."""
        deadline = time.monotonic() + timeout
        while True:
            procs = self._scan()
            if not procs:
                return
            if time.monotonic() > deadline:
                raise HostError(
                    f"{self.name}: processes survived SIGKILL for {timeout} s: {sorted(procs)}"
                )
            for pid, starttime in procs.items():
                _signal_exact(pid, starttime, signal.SIGKILL)
            time.sleep(_POLL)


# --------------------------------------------------------------------------------------------
# the supervisor


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
        if isinstance(rec, _PidRecord) and _alive(rec.pid, rec.starttime):
            return rec
        return None

    def state(self) -> ServiceState:
        rec = self._record()
        if rec is None:
            return ServiceState.STOPPED
        if isinstance(rec, _PidRecord) and _alive(rec.pid, rec.starttime):
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
        if d.user is not None and d.user != _current_user():
            if os.geteuid() != 0:
                raise self._err(f"cannot run as {d.user}: the operator is not root")
            try:
                pw = _passwd(d.user)
            except HostError as e:
                raise self._err(str(e)) from None
            prefix = _setpriv(pw)
        else:
            pw = pwd.getpwuid(os.geteuid())
            prefix = []
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
        argv = prefix + list(d.argv)
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
        # Read the start time before the reaper may wait(): until then even a child that
        # already died is a zombie whose /proc entry still exists.
        starttime = proc_starttime(proc.pid)
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

    def _log_tail(self, offset: int = 0) -> str:
        try:
            with open(self.log_path, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(offset, size - 8192))
                return _tail(f.read().decode("utf-8", "replace"))
        except OSError:
            return ""

    def stop(self) -> None:
        with _lock_for(self.pid_path):
            self._stop()

    def _stop(self) -> None:
        rec = self._record()
        if rec is None:
            return
        if isinstance(rec, _PidRecord) and _alive(rec.pid, rec.starttime):
            try:
                timeout = self.definition().stop_timeout
            except HostError:
                timeout = ServiceDefinition.stop_timeout
            self._terminate(rec, timeout)
        self.host.remove(self.pid_path)

    def _terminate(self, rec: _PidRecord, timeout: float) -> None:
        st = _proc_stat(rec.pid)
        # Only a group we verified to be led by our process is signalled as a group.
        group = st is not None and st.pgrp == rec.pid
        _signal_exact(rec.pid, rec.starttime, signal.SIGTERM)
        if group:
            _killpg(rec.pid, signal.SIGTERM)
        if not self._wait_gone(rec, timeout):
            _signal_exact(rec.pid, rec.starttime, signal.SIGKILL)
            if group:
                _killpg(rec.pid, signal.SIGKILL)
            if not self._wait_gone(rec, 5):
                raise self._err(f"pid {rec.pid} survived SIGKILL")
        if group:
            # Children left behind in the group die with their leader, as under systemd.
            _killpg(rec.pid, signal.SIGKILL)

    @staticmethod
    def _wait_gone(rec: _PidRecord, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while _alive(rec.pid, rec.starttime):
            if time.monotonic() > deadline:
                return False
            time.sleep(_POLL)
        return True

    def reload(self) -> None:
        d = self.definition()
        if d.reload_signal is None:
            self.restart()
            return
        rec = self._running()
        if rec is None or not _signal_exact(
            rec.pid, rec.starttime, _signal_number(d.reload_signal)
        ):
            raise self._err("cannot reload: not running")

    def restart(self) -> None:
        with _lock_for(self.pid_path):
            self._stop()
            self._start()


def write_definition(host: LocalHost, d: ServiceDefinition) -> bool:
    """Write a service's definition file where LocalService reads it; False if unchanged."""
    return host.write(host.service(d.name).definition_path, definition_to_json(d).encode())


__all__ = [
    "TAG_VAR",
    "LocalHost",
    "LocalService",
    "check_definition",
    "definition_from_json",
    "definition_to_json",
    "proc_starttime",
    "write_definition",
]
