"""The Controller's certificates: issue or renew them when due (an acting cycle), read them
as they are otherwise, and how long until the first one ends (for the condition, status
and metrics).

A mixin of Controller (shell/controller.py): the certificates themselves are
state/pki.py's; this is only when a controller asks for them and what it remembers.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pgha_operator.core.spec import Cluster
from pgha_operator.core.tls import TlsMaterial, days_left
from pgha_operator.core.topology import Topology
from pgha_operator.shell.state import StateDir

__all__ = ["CertificateHooks"]


class CertificateHooks:
    """Controller's certificate hooks; `certificates_end` is the earliest certificate's end
    as last seen, `clock` the time they are measured against (tests move it)."""

    # Provided by Controller.
    state: StateDir
    cluster: Cluster
    topology: Topology
    certificates_end: datetime | None
    clock: Callable[[], datetime]
    event: Callable[[str], None]

    def tls(self, act: bool = False) -> TlsMaterial | None:
        """The cluster's certificates: issued or renewed when due if `act`, else as they
        are (None before the first apply: render shows placeholders)."""
        if act:
            issued = self.state.issue_tls(self.cluster, self.topology, self.clock())
            by_reason: dict[str, list[str]] = {}
            for name, why in issued.renewed:
                by_reason.setdefault(why, []).append(name)
            for why, names in by_reason.items():  # one event per reason: a renewal is ~10
                self.event(f"certificates issued ({why}): {', '.join(names)}")
            self.certificates_end = issued.not_after
            return issued.material
        self.certificates_end = self.state.certificates_end()
        return self.state.tls(self.topology)

    def certificate_days(self) -> float | None:
        """Days until the first certificate ends (None before any was issued)."""
        if self.certificates_end is None:
            return None
        return days_left(self.certificates_end, self.clock())

    def certificates_status(self) -> dict[str, Any] | None:
        """status.json's `certificates` (None before any was issued)."""
        if self.certificates_end is None:
            return None
        days = self.certificate_days()
        return {
            "firstEnds": self.certificates_end.isoformat(timespec="seconds"),
            "daysLeft": None if days is None else round(days, 1),
        }
