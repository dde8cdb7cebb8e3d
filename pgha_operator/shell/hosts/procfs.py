"""The process table of this computer, read from /proc, and signals that never hit a reused pid.

Shared by the local host (processes tagged with the machine's environment variable) and the
nspawn provider (systemd-nspawn and the processes of a container's PID namespace). Every
process is named by (pid, start time): a pid alone may belong to another process by the time
it is signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import NamedTuple

DEAD_STATES = ("Z", "X", "x")  # a zombie has exited; only its parent's wait() is missing
STOPPED_STATES = ("T", "t")
POLL = 0.05


class ProcStat(NamedTuple):
    state: str
    ppid: int
    pgrp: int
    starttime: int


def proc_stat(pid: int) -> ProcStat | None:
    """Fields of /proc/PID/stat, or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm (field 2) may contain spaces and parentheses: split after its last ')'.
    rest = data[data.rindex(b")") + 2 :].split()
    # rest[0] is field 3; starttime is field 22.
    return ProcStat(rest[0].decode(), int(rest[1]), int(rest[2]), int(rest[19]))


def proc_starttime(pid: int) -> int | None:
    st = proc_stat(pid)
    return None if st is None else st.starttime


def proc_state(pid: int) -> str:
    """The scheduler state letter ("R", "S", "T", "Z", ...); "X" when the process is gone."""
    st = proc_stat(pid)
    return "X" if st is None else st.state


def alive(pid: int, starttime: int | None = None) -> bool:
    """A live process (zombies are dead: PID 1 here does not reap orphans, so a dead daemon
    can stay a zombie forever) whose start time matches when given (a reused pid is not it)."""
    st = proc_stat(pid)
    if st is None or st.state in DEAD_STATES:
        return False
    return starttime is None or st.starttime == starttime


def live_processes() -> Iterator[tuple[int, ProcStat]]:
    """Every live (not zombie) process of this computer."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            st = proc_stat(int(entry))
        except (OSError, ValueError, IndexError):
            continue  # vanished or unreadable mid-read
        if st is not None and st.state not in DEAD_STATES:
            yield int(entry), st


def read_environ(pid: int) -> list[bytes] | None:
    """The NUL-separated environment of a process; None for kernel threads, processes that
    are gone, or ones a non-root operator may not read."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return None


def read_cmdline(pid: int) -> list[bytes]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().rstrip(b"\0").split(b"\0")
    except OSError:
        return []


def signal_exact(pid: int, starttime: int, sig: int) -> bool:
    """Signal pid only if it is still the process that started at `starttime`.

    A pidfd pins the process: after the start-time check it cannot be swapped for another
    one that reused the pid. Returns False when the process is gone."""
    try:
        pidfd = os.pidfd_open(pid)
    except (ProcessLookupError, PermissionError):
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


def killpg(pgrp: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgrp, sig)


def signal_number(name: str) -> signal.Signals:
    """ "HUP", "sighup" or "SIGHUP" -> signal.SIGHUP; ValueError for an unknown name."""
    key = name.upper()
    if not key.startswith("SIG"):
        key = "SIG" + key
    try:
        return signal.Signals[key]
    except KeyError:
        raise ValueError(f"unknown signal {name!r}") from None


def wait_until(done: Callable[[], bool], timeout: float, poll: float = POLL) -> bool:
    """Poll `done` until it is true (True) or `timeout` seconds passed (False)."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(poll)
    return True


def wait_gone(procs: dict[int, int], timeout: float) -> dict[int, int]:
    """Wait until none of `procs` (pid -> start time) is alive; return those still alive."""
    left = dict(procs)

    def gone() -> bool:
        for pid, starttime in list(left.items()):
            if not alive(pid, starttime):
                del left[pid]
        return not left

    wait_until(gone, timeout)
    return left


# --- PID namespaces (containers) ----------------------------------------------------------------


def _pid_namespace(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def container_init(parent: int) -> int | None:
    """The PID 1 of a container: the child of `parent` (e.g. systemd-nspawn) that lives in
    another PID namespace."""
    own = _pid_namespace(parent)
    if own is None:
        return None
    for pid, st in live_processes():
        if st.ppid == parent:
            ns = _pid_namespace(pid)
            if ns is not None and ns != own:
                return pid
    return None


def namespace_processes(init: int) -> dict[int, ProcStat]:
    """Every live process in the PID namespace of `init` (a container's PID 1)."""
    ns = _pid_namespace(init)
    if ns is None:
        return {}
    return {pid: st for pid, st in live_processes() if _pid_namespace(pid) == ns}


# --- tagged process trees (the local host's machines) --------------------------------------------


def tagged_tree(var: str, value: str) -> dict[int, int]:
    """pid -> start time of every live process whose environment has `var=value`, and of
    their descendants, except a descendant tagged with another value of `var` (and this
    process itself).

    Descendants count because PostgreSQL backends overwrite their environment block with
    the process title, so /proc/PID/environ no longer shows the tag (measured: the
    postmaster keeps it, its children do not)."""
    marker = f"{var}={value}".encode()
    other = f"{var}=".encode()
    children: dict[int, list[int]] = {}
    starttimes: dict[int, int] = {}
    roots: list[int] = []
    foreign: set[int] = {os.getpid()}
    for pid, st in live_processes():
        starttimes[pid] = st.starttime
        children.setdefault(st.ppid, []).append(pid)
        env = read_environ(pid)
        if env is None:
            continue  # kernel threads, or not ours to read as a non-root operator
        if marker in env:
            roots.append(pid)
        elif any(e.startswith(other) for e in env):
            foreign.add(pid)  # another machine's process, even if spawned from ours
    found: dict[int, int] = {}
    stack = roots
    while stack:
        pid = stack.pop()
        if pid in found or pid in foreign or pid not in starttimes:
            continue
        found[pid] = starttimes[pid]
        stack.extend(children.get(pid, ()))
    return found
