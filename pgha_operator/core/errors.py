"""Typed errors (kopf style): temporary ones are retried after a delay, permanent ones stop
the change they belong to and are reported until the input changes."""

from __future__ import annotations


class OperatorError(Exception):
    """Base of the operator's own errors; the message is meant for a human."""


class TemporaryError(OperatorError):
    """Retried by the next cycle. `delay` (seconds), when given, is how long the loop waits
    before that cycle (kopf's `TemporaryError(delay=...)`); None keeps the loop's own pace."""

    def __init__(self, message: str, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentError(OperatorError):
    pass
