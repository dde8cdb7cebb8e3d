"""The state dir's own error: a file the operator cannot trust, named, with what to do."""

from __future__ import annotations

from pathlib import Path

from pgha_operator.core.errors import PermanentError


class StateError(PermanentError):
    """A state file is missing, unreadable or damaged; nothing was changed."""

    def __init__(self, path: Path, problem: str, remedy: str) -> None:
        super().__init__(f"{path}: {problem}. Nothing was changed. {remedy}")
        self.path = path
