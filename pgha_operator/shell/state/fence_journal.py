"""fences.json: the timeline of this cluster's last fences (the fencer writes one record per
fence; the drill reads them to split a failover's write gap into its steps).

Times are this host's time.monotonic(), comparable between processes of the same boot;
`wallTime` says when, for a person. Only the last MAX_RECORDS are kept.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pgha_operator.shell.state.atomic import write_atomic

FILE_NAME = "fences.json"
MAX_RECORDS = 50


def record_fence(state_dir: Path, record: dict[str, Any]) -> None:
    """Append a fence's record (written after the key was released: never on the fast path)."""
    records = read_fences(state_dir)[-(MAX_RECORDS - 1) :] + [record]
    state_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(state_dir / FILE_NAME, (json.dumps(records) + "\n").encode(), durable=False)


def read_fences(state_dir: Path) -> list[dict[str, Any]]:
    """The records, oldest first; [] when there is no journal or it cannot be read."""
    try:
        records = json.loads((state_dir / FILE_NAME).read_text())
    except (OSError, ValueError):
        return []
    return [r for r in records if isinstance(r, dict)] if isinstance(records, list) else []
