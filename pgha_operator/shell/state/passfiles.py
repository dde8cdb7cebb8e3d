"""`passfiles/<role>` (0600, in a 0700 folder): the libpq passfile of each login role
(core/passfile.py makes the text). Written only when the text changes; a role no longer
declared loses its file."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pgha_operator.core.passfile import DIRECTORY
from pgha_operator.shell.state.atomic import write_atomic

MODE = 0o600


def path_of(state: Path, role: str) -> Path:
    return state / DIRECTORY / role


def sync(state: Path, wanted: Mapping[str, str]) -> list[str]:
    """Make the folder hold exactly `wanted` (role -> text); returns the roles written."""
    folder = state / DIRECTORY
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    written = []
    for role, text in sorted(wanted.items()):
        path = folder / role
        data = text.encode()
        if _read(path) != data or path.stat().st_mode & 0o777 != MODE:
            write_atomic(path, data, MODE)
            written.append(role)
    for path in folder.iterdir():
        if path.name not in wanted and not path.name.startswith("."):
            path.unlink(missing_ok=True)
    return written


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None
