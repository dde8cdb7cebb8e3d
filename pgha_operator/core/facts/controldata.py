"""PostgreSQL's control file as `pg_controldata` prints it (run with LC_ALL=C), and LSNs.

Only the fields an assisted switchover needs: whether the cluster was shut down cleanly
and where its last (shutdown) checkpoint record starts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SHUT_DOWN = "shut down"  # written after the shutdown checkpoint, before walsenders finish

_LSN = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")


def parse_lsn(text: str) -> int:
    """'0/3000028' -> 50331688; ValueError on anything else."""
    match = _LSN.match(text.strip())
    if match is None:
        raise ValueError(f"not an LSN: {text!r}")
    return (int(match.group(1), 16) << 32) | int(match.group(2), 16)


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


@dataclass(frozen=True)
class ControlData:
    state: str  # "in production", "shut down", "shutting down", "in archive recovery"...
    checkpoint_lsn: int | None  # "Latest checkpoint location": where that record starts
    timeline: int | None  # "Latest checkpoint's TimeLineID"

    @property
    def shut_down(self) -> bool:
        """Exactly "shut down": a primary's clean stop (a replica says "... in recovery")."""
        return self.state == SHUT_DOWN


def parse_controldata(text: str) -> ControlData:
    """The fields of `pg_controldata` output; a missing or malformed one is None (state: "")."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep:
            fields[name.strip()] = value.strip()
    try:
        lsn: int | None = parse_lsn(fields.get("Latest checkpoint location", ""))
    except ValueError:
        lsn = None
    timeline = fields.get("Latest checkpoint's TimeLineID", "")
    return ControlData(
        state=fields.get("Database cluster state", ""),
        checkpoint_lsn=lsn,
        timeline=int(timeline) if timeline.isdigit() else None,
    )
