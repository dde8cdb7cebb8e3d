"""Typed errors (kopf style): temporary ones are retried after a delay, permanent ones stop
the change they belong to and are reported until the input changes."""

from __future__ import annotations


class OperatorError(Exception):
    """Base of the operator's own errors; the message is meant for a human."""


class TemporaryError(OperatorError):
    def __init__(self, message: str, delay: float = 2.0) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentError(OperatorError):
    pass
