"""What `apply` is doing, while it does it: the step it is on, what it waits for, and the
time since it started.

On a terminal, one status line is rewritten in place (carriage return) every second and each
action also stays above it as a `-> ...` line; elsewhere (a pipe, a log file, CI) plain
lines, one per action and one each time what apply waits for changes.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from pgha_operator.core.actions import Action

if TYPE_CHECKING:
    from pgha_operator.shell.cycle import CycleReport

CLEAR_LINE = "\r\x1b[K"  # back to the line's start and erase it
TICK_SECONDS = 1.0


class ApplyProgress:
    """Give `action` to the controller as its progress callback and `cycle` to the loop."""

    def __init__(
        self,
        out: TextIO,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        width: Callable[[], int] = lambda: shutil.get_terminal_size().columns,
    ) -> None:
        self.out = out
        self.tty = out.isatty() if tty is None else tty
        self.clock = clock
        self.width = width
        self.started = clock()
        self.steps = 0
        self.now = "observing the cluster"
        self._printed = ""  # plain mode: the last state written, not repeated
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def elapsed(self) -> str:
        minutes, seconds = divmod(int(self.clock() - self.started), 60)
        return f"{minutes}:{seconds:02d}"

    def line(self) -> str:
        return f"[{self.elapsed()}] {self.now}"

    def action(self, action: Action) -> None:
        """Called by execute before each action runs."""
        with self._lock:
            self.steps += 1
            self._show(f"step {self.steps}: {action.describe}", keep=f"-> {action.describe}")

    def cycle(self, report: CycleReport) -> None:
        """Called by the apply loop after each cycle: what comes next."""
        if report.converged and self.steps:
            text = "converged; checking it still holds after one Patroni loop"
        elif report.converged:
            text = "converged"
        else:
            text = f"{report.decision} ({report.phase})"
        with self._lock:
            self._show(text)

    def start(self) -> ApplyProgress:
        """On a terminal, redraw every second so the elapsed time moves while apply waits."""
        if self.tty and self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, name="apply-progress", daemon=True)
            self._ticker.start()
        return self

    def close(self) -> None:
        """Stop the ticker; on a terminal the last status line stays, with the total time."""
        self._stop.set()
        if self._ticker:
            self._ticker.join()
        with self._lock:
            if self.tty:
                self._draw()
                self.out.write("\n")
                self.out.flush()

    def _show(self, text: str, keep: str | None = None) -> None:
        # One line whatever the text holds (an error may carry a whole HTML page).
        text = " ".join(text.split())
        keep = " ".join(keep.split()) if keep else None
        self.now = text
        if self.tty:
            if keep:
                self.out.write(f"{CLEAR_LINE}{keep}\n")
            self._draw()
        elif text != self._printed:
            self.out.write(f"{self.line()}\n" if keep is None else f"[{self.elapsed()}] {keep}\n")
            self._printed = text
        self.out.flush()

    def _draw(self) -> None:
        # Cut to the terminal's width: a wrapped line cannot be rewritten by "\r".
        self.out.write(CLEAR_LINE + self.line()[: max(self.width() - 1, 10)])

    def _tick(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            with self._lock:
                self._draw()
                self.out.flush()
