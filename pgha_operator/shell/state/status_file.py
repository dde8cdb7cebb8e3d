"""status.json in the state dir: the acting operator writes it every cycle, `status` reads it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pgha_operator.shell.state.atomic import write_atomic

STATUS_FILE = "status.json"


def write_status(state_dir: Path, status: Mapping[str, Any]) -> None:
    """Write atomically (temp file + rename): a reader never sees half a document. Not
    fsynced: the next cycle, two seconds on, writes it again."""
    text = json.dumps(status, indent=2, sort_keys=False, default=str) + "\n"
    write_atomic(state_dir / STATUS_FILE, text.encode(), durable=False)


def read_status(state_dir: Path) -> dict[str, Any] | None:
    """The last written status, or None when there is none or it cannot be read."""
    path = state_dir / STATUS_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
