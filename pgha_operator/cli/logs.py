"""How the operator's log reads: `--log-format console` (one readable line per event, the
default on a terminal) or `json` (one JSON object per line, the default otherwise, e.g. under
systemd, where the journal keeps the lines). structlog renders both; logs go to stderr."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

import structlog

FORMATS = ("console", "json")


def add_log_format_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--log-format",
        choices=FORMATS,
        help="console (default on a terminal) or json (default otherwise: one object a line)",
    )


def configure(log_format: str | None = None, stream: TextIO | None = None) -> str:
    """Configure structlog for `log_format` (None: by whether `stream` is a terminal).
    Returns the format chosen."""
    stream = stream or sys.stderr
    if log_format is None:
        log_format = "console" if stream.isatty() else "json"
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,  # run -f DIR: each loop's `cluster`
        structlog.processors.add_log_level,
    ]
    if log_format == "json":
        processors += [
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ]
    else:
        processors += [
            structlog.processors.TimeStamper(fmt="%H:%M:%S"),
            structlog.dev.ConsoleRenderer(colors=False),
        ]
    structlog.configure(
        processors=processors,
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    return log_format
