"""What a fake component answers when a call fails: the fake clients turn it into the real
clients' errors (ComponentError with the HTTP status, or a connection error)."""

from __future__ import annotations


class CallError(Exception):
    """A call failed: `status` is the HTTP status when the component answered, None when it
    did not answer at all (connection refused, timed out)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
