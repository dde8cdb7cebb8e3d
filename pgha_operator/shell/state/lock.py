"""Advisory locks in the state dir (flock: released by the kernel when the holder dies).

`operator.lock` is held by whatever acts on the cluster as its operator (`apply`, `run`,
`destroy`, a drill's background operator, a `switchover` when no operator runs).
`switchover.lock` is held for the length of a manual `switchover`, and by an operator
while it executes a switchover of its own, so two switchovers never overlap.
`rotation.lock` is held for the length of `rotate passwords`, so two rotations never overlap.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import IO

from pgha_operator.core.errors import PermanentError

OPERATOR_LOCK = "operator.lock"
SWITCHOVER_LOCK = "switchover.lock"
ROTATION_LOCK = "rotation.lock"


class LockHeld(PermanentError):
    """Another process holds the lock; `holder` says who (pid and command)."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(f"{path} is held by {holder}")
        self.path = path
        self.holder = holder


class FileLock:
    """One lock file; `acquire` takes it without waiting or raises LockHeld."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._fh is not None

    def acquire(self, who: str) -> None:
        if self._fh:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")  # noqa: SIM115 - held until release()
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise LockHeld(self.path, holder) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} ({who})")
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh:
            self._fh.close()
            self._fh = None

    def holder(self) -> str | None:
        """Who holds the lock now (None: nobody), without creating or writing anything."""
        if self._fh:
            return f"pid {os.getpid()} (this process)"
        try:
            fh = open(self.path)  # noqa: SIM115 - closed below
        except FileNotFoundError:
            return None
        with fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return fh.read().strip() or "another process"
            with contextlib.suppress(OSError):
                fcntl.flock(fh, fcntl.LOCK_UN)
            return None
