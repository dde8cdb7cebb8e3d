"""`rotation.yaml` (0600): the old passwords of database roles whose new password is saved
in secrets.yaml but not yet set by `ALTER ROLE` (core/rotation.py says why and in which
order). Present only while a rotation runs; written before secrets.yaml changes, removed
once every ALTER ROLE is done."""

from __future__ import annotations

import contextlib
from pathlib import Path

import yaml

from pgha_operator.shell.state.atomic import fsync_dir, write_atomic
from pgha_operator.shell.state.errors import StateError

FILE_NAME = "rotation.yaml"
MODE = 0o600


def read_previous(folder: Path) -> dict[str, str] | None:
    """Secrets field -> old password; None when no rotation is pending."""
    path = folder / FILE_NAME
    try:
        loaded = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise StateError(path, f"cannot be read ({exc})", _remedy(path)) from None
    previous = loaded.get("previous") if isinstance(loaded, dict) else None
    if not isinstance(previous, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in previous.items()
    ):
        raise StateError(path, "is damaged (no mapping `previous`)", _remedy(path))
    return previous


def write_previous(folder: Path, previous: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump({"previous": previous}, sort_keys=True).encode()
    write_atomic(folder / FILE_NAME, text, MODE)


def clear(folder: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (folder / FILE_NAME).unlink()
        fsync_dir(folder)


def _remedy(path: Path) -> str:
    return (
        "It holds the old passwords of a rotation that did not finish; if every role "
        "already logs in with the passwords in secrets.yaml, delete it, else restore it "
        "from your backup (README, section Secrets)"
    )
