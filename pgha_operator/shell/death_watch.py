"""A machine's death, reported the moment it happens: a pidfd on each of its vital processes
(the provider names them: shell/providers/base.py DeathReports).

A pidfd becomes readable when its process exits (zombie or reaped, child of ours or not),
so the fencer can wait on them between its probes and act within milliseconds of a crash
instead of after `probeFailures` failed probes. Opening a pidfd pins the process: the start
time read after opening proves it is the process the provider named, not a reused pid.
"""

from __future__ import annotations

import contextlib
import os
import select
from collections.abc import Mapping

from pgha_operator.shell.hosts import procfs


class DeathWatch:
    """The vital processes of one machine. `wait` says whether every one has exited."""

    def __init__(self, machine: str, processes: Mapping[int, int]) -> None:
        self.machine = machine
        self.processes = dict(processes)  # pid -> start time, as the provider named them
        self._fds: dict[int, int] = {}  # pidfd -> pid, for the processes still alive
        self._poll = select.poll()
        self._spent = False
        for pid, starttime in self.processes.items():
            fd = _pidfd(pid, starttime)
            if fd is not None:
                self._fds[fd] = pid
                self._poll.register(fd, select.POLLIN)

        # Some vital process was alive when the watch began: a watch of a machine already
        # down reports nothing (the probes decide).
        self.armed = bool(self._fds)

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds; True once every vital process has exited. It says
        True once only: the death is reported, the watch is spent."""
        if self._spent or not self._fds:
            return False
        for fd, _ in self._poll.poll(max(0, int(timeout * 1000))):
            self._poll.unregister(fd)
            os.close(fd)
            del self._fds[fd]
        if self._fds:
            return False
        self._spent = True
        return True

    def close(self) -> None:
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
        self._spent = True


def _pidfd(pid: int, starttime: int) -> int | None:
    """A pidfd on that exact process, or None when it is gone (or the pid was reused)."""
    try:
        fd = os.pidfd_open(pid)
    except (ProcessLookupError, PermissionError, OSError):
        return None
    if not procfs.alive(pid, starttime):
        os.close(fd)
        return None
    return fd
