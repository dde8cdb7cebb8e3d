"""The one error every client raises: a component did not answer, or refused."""

from __future__ import annotations

from pgha_operator.core.errors import TemporaryError


class ComponentError(TemporaryError):
    """A call to etcd, Patroni, PostgreSQL or HAProxy failed; the message names the URL.

    A TemporaryError: the loop re-observes and re-plans, and the action re-checks its
    precondition next time. `status` is the HTTP status when the component answered
    (e.g. 412 for an etcd membership precondition, 503 from Patroni), else None.
    """

    def __init__(
        self, message: str, *, url: str, status: int | None = None, body: str | None = None
    ) -> None:
        super().__init__(message)
        self.url = url
        self.status = status
        self.body = body
