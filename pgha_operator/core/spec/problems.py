"""How a refused manifest is reported: one `Problem` per fault, all of them in a
`ManifestError`, values shown as the DBA wrote them in YAML."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Problem:
    """Why a manifest was refused. `path` is the field path as written in the YAML."""

    file: str
    path: str
    reason: str
    line: int | None = None
    document: int | None = None  # 1-based, set when the file holds several documents

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        if self.document:
            where += f" [document {self.document}]"
        return f"{where}: {self.path}: {self.reason}" if self.path else f"{where}: {self.reason}"


class ManifestError(Exception):
    """A manifest was refused; nothing was touched. Carries every problem found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def show_value(value: Any) -> str:
    """A value as a DBA wrote it in YAML."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return str(value)


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


def path_part(key: str) -> str:
    """A key as one part of a dotted field path, quoted when it holds a '.', a space or a
    control character: the path stays on one line and splits back into its keys
    (yaml_nodes.split_path)."""
    return key if _PLAIN_KEY.fullmatch(key) else repr(key)
