"""The operator's own systemd unit, as text (pure): what `install-service` writes and
`install-service --print` shows. The shell (shell/service_unit.py) installs it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from pgha_operator.core.render.context import render_template

UNIT_NAME = "pgha-operator.service"
DEFAULT_MANIFESTS = "/etc/pgha-operator/manifests"
DEFAULT_STATE_ROOT = "/var/lib/pgha-operator"
# Characters that make systemd split or expand a word of ExecStart=.
_PLAIN = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")


@dataclass(frozen=True)
class UnitSettings:
    binary: str  # the venv's pgha-operator
    manifests: str = DEFAULT_MANIFESTS
    state_root: str = DEFAULT_STATE_ROOT
    listen: str | None = None
    watchdog_sec: int = 60
    restart_sec: int = 3
    start_timeout: int = 90
    stop_timeout: int = 60


def exec_word(word: str) -> str:
    """One argument of ExecStart=, escaped for systemd: `%` and `$` are specifiers and
    variables there; anything with spaces or quotes is double-quoted."""
    escaped = word.replace("%", "%%").replace("$", "$$")
    if _PLAIN.match(escaped):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def exec_start(settings: UnitSettings) -> str:
    argv: list[str] = [
        settings.binary,
        "run",
        "-f",
        settings.manifests,
        "--state-root",
        settings.state_root,
    ]
    if settings.listen:
        argv += ["--listen", settings.listen]
    return " ".join(exec_word(w) for w in argv)


def check_absolute(pairs: Sequence[tuple[str, str]]) -> list[str]:
    """The settings that must be absolute paths and are not, as `name: value` lines."""
    return [
        f"{name}: {value!r} is not an absolute path"
        for name, value in pairs
        if not PurePosixPath(value).is_absolute()
    ]


def render_unit(settings: UnitSettings) -> str:
    return render_template(
        "pgha-operator.service.j2",
        manifests=settings.manifests,
        exec_start=exec_start(settings),
        restart_sec=settings.restart_sec,
        start_timeout=settings.start_timeout,
        stop_timeout=settings.stop_timeout,
        watchdog_sec=settings.watchdog_sec,
    )
