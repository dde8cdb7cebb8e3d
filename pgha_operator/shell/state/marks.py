"""Machine-down marks: how a drill tells a running operator not to repair a machine.

A crashed machine stays down until someone repairs it, but on the `local` provider a
running operator would restart the killed services within a second or two, and a crash
would then be a restart (Patroni keeps its leader key, nothing fails over). So a drill
that crashes a machine first writes `<state dir>/down/<machine>.json`; the controller
reads the marks every cycle (`Observed.down`) and `plan` starts nothing on a marked
machine. Each mark expires on its own (`until`), so a drill that dies mid-fault leaves the
machine down for a bounded time only.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

from pgha_operator.shell.state.atomic import write_atomic

DOWN_DIR = "down"


def mark_path(state_dir: Path, machine: str) -> Path:
    return state_dir / DOWN_DIR / f"{machine}.json"


def mark_down(state_dir: Path, machine: str, seconds: float, reason: str) -> Path:
    """Mark `machine` down for at most `seconds` (atomic write)."""
    path = mark_path(state_dir, machine)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"machine": machine, "until": time.time() + seconds, "reason": reason}
    write_atomic(path, (json.dumps(body) + "\n").encode())
    return path


def clear_down(state_dir: Path, machine: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        mark_path(state_dir, machine).unlink()


def down_machines(state_dir: Path, now: float | None = None) -> frozenset[str]:
    """Machines with an unexpired mark. An unreadable mark counts as no mark."""
    folder = state_dir / DOWN_DIR
    if not folder.is_dir():
        return frozenset()
    now = time.time() if now is None else now
    down = set()
    for path in folder.glob("*.json"):
        try:
            body = json.loads(path.read_text())
            if float(body["until"]) > now:
                down.add(str(body["machine"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return frozenset(down)
