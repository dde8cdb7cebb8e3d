"""The cluster's identity: `cluster-id` (0600), a random id generated once, kept beside the
secrets.

Hosts the operator prepares record it (shell/providers/host_owner.py): an operator with
another state dir (another identity) meets a host of the cluster and refuses to take it over,
instead of re-keying it with passwords of its own. An operator given a copy of this state dir
(a standby operator) has the same identity and is accepted.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

from pgha_operator.shell.state.atomic import write_atomic
from pgha_operator.shell.state.errors import StateError

FILE_NAME = "cluster-id"
MODE = 0o600
_VALID = re.compile(r"^[0-9a-f]{32}$")


def read_cluster_id(folder: Path) -> str | None:
    """The id, None when none was made yet. Raises StateError when the file is damaged."""
    path = folder / FILE_NAME
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(path, f"cannot be read ({exc.strerror})", _remedy()) from None
    if not _VALID.match(text):
        raise StateError(path, "is damaged (not 32 hex digits)", _remedy())
    return text


def ensure_cluster_id(folder: Path) -> str:
    """The id, generated (once) when there is none."""
    existing = read_cluster_id(folder)
    if existing is not None:
        return existing
    new = secrets.token_hex(16)
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / FILE_NAME, (new + "\n").encode(), MODE)
    return new


def _remedy() -> str:
    return (
        "restore it from a backup of the state dir: the hosts of the cluster record this id "
        "and refuse an operator with another one"
    )
