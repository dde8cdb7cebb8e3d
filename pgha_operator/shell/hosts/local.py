"""The local transport: a machine is a directory on this computer, commands are subprocesses,
and services run under a small process supervisor (supervisor.py: pid files and logs inside
the machine).

Every process of a machine carries `PGHA_MACHINE=<tag>` in its environment. That, plus the
pid files, is the only way this module ever finds something to signal: never a process name.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence

from pgha_operator.shell.hosts import procfs
from pgha_operator.shell.hosts.base import CommandResult, HostError
from pgha_operator.shell.hosts.supervisor import TAG_VAR, LocalService
from pgha_operator.shell.hosts.users import current_user, owner_ids, passwd, setpriv, tail


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
            return owner_ids(owner)
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
        as_user = f" as {user}" if user is not None and user != current_user() else ""
        cmd, env, cwd = self._command(argv, user if as_user else None)
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
                    procfs.killpg(proc.pid, signal.SIGKILL)
                    proc.kill()
                    # An escaped grandchild may still hold the pipes: do not wait for it.
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.communicate(timeout=2)
                    raise HostError(
                        f"{self.name}: {shlex.join(argv)}{as_user} timed out after {timeout} s"
                    ) from None
            result = CommandResult(argv, proc.returncode, out, err)
        if check and not result.ok:
            detail = tail(result.stderr) or tail(result.stdout)
            raise HostError(
                f"{self.name}: {shlex.join(argv)}{as_user} failed with exit code "
                f"{result.returncode}" + (f":\n{detail}" if detail else "")
            )
        return result

    def _command(
        self, argv: tuple[str, ...], user: str | None
    ) -> tuple[list[str], dict[str, str], str | None]:
        """argv, environment and cwd of a command of this machine, run as `user` (None: the
        operator's own user)."""
        env = dict(os.environ)
        # Whatever a command leaves behind (e.g. `pg_ctl start`) belongs to this machine.
        env[TAG_VAR] = self.tag
        if user is None:
            return list(argv), env, None
        if os.geteuid() != 0:
            raise HostError(f"{self.name}: cannot run {shlex.join(argv)} as {user}: not root")
        pw = passwd(user)
        env.update(HOME=pw.pw_dir, USER=pw.pw_name, LOGNAME=pw.pw_name)
        # The operator's cwd may be unreachable for that user (a mode-700 home).
        return setpriv(pw) + list(argv), env, "/"

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

    def installed_services(self) -> list[str]:
        """Services defined on this machine (the supervisor's definition files)."""
        try:
            entries = os.listdir(self.services_dir)
        except FileNotFoundError:
            return []
        except OSError as e:
            raise HostError(f"{self.name}: cannot list {self.services_dir}: {e}") from e
        return sorted(e[: -len(".json")] for e in entries if e.endswith(".json"))

    def _scan(self) -> dict[int, int]:
        """pid -> starttime of every live process of this machine."""
        return procfs.tagged_tree(TAG_VAR, self.tag)

    def process_table(self) -> dict[int, int]:
        """pid -> start time of every live process of this machine."""
        return self._scan()

    def processes(self) -> list[int]:
        """Every live pid of this machine (tagged, or descending from a tagged process)."""
        return sorted(self._scan())

    def kill_all(self, timeout: float = 10) -> None:
        """SIGKILL every process of the machine (a power cut), until none is left."""
        deadline = time.monotonic() + timeout
        pause = 0.005  # SIGKILLed processes are gone within milliseconds: look again soon
        while True:
            procs = self._scan()
            if not procs:
                return
            if time.monotonic() > deadline:
                raise HostError(
                    f"{self.name}: processes survived SIGKILL for {timeout} s: {sorted(procs)}"
                )
            for pid, starttime in procs.items():
                procfs.signal_exact(pid, starttime, signal.SIGKILL)
            time.sleep(pause)
            pause = min(pause * 2, procfs.POLL)


__all__ = ["TAG_VAR", "LocalHost", "LocalService"]
