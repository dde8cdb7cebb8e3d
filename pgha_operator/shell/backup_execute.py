"""Performs the repository's actions (core/backup_actions.py) on the primary's machine."""

from __future__ import annotations

import posixpath

from pgha_operator.core.backup_actions import (
    AdoptStanza,
    BackupAction,
    CreateStanza,
    PushOlderTimelineWal,
)
from pgha_operator.core.errors import OperatorError, TemporaryError
from pgha_operator.core.facts.backup import older_timeline_segments, timeline_marker
from pgha_operator.core.topology import Layout
from pgha_operator.shell.clients.pgbackrest import PgBackRest
from pgha_operator.shell.hosts.base import Host, HostError

REPOSITORY_MODE = 0o750  # PostgreSQL's user writes it; nobody else reads the backups
# A refused stanza-create (a repository PostgreSQL's user cannot write...) is tried again
# this much later, not every cycle.
RETRY_SECONDS = 10.0


def perform_backup(action: BackupAction, host: Host, layout: Layout, stanza: str) -> None:
    try:
        _perform(action, host, PgBackRest(host, layout, stanza, action.owner), layout)
    except HostError as exc:
        raise TemporaryError(str(exc), delay=RETRY_SECONDS) from exc


def _perform(action: BackupAction, host: Host, client: PgBackRest, layout: Layout) -> None:
    match action:
        case CreateStanza(repository=repository, owner=owner):
            ensure_dir = getattr(host, "ensure_dir", None)
            if ensure_dir is None:
                raise OperatorError(f"{host.name}: cannot create the repository {repository}")
            ensure_dir(repository, mode=REPOSITORY_MODE, owner=owner)
            client.create_stanza()
            client.check()
        case AdoptStanza(repository=repository, marker=marker):
            client.upgrade_stanza()
            client.check()
            host.remove(marker)
            # The former cluster's timelines are not this one's.
            host.remove(timeline_marker(repository, client.stanza))
        case PushOlderTimelineWal(timeline=timeline, owner=owner, marker=marker):
            pg_wal = posixpath.join(layout.pg_data, "pg_wal")
            listed = host.run(["ls", "-1", pg_wal], user=owner).stdout.split()
            for segment in older_timeline_segments(listed, timeline):
                client.archive_push(posixpath.join(pg_wal, segment))
            host.write(marker, f"{timeline}\n".encode(), mode=0o644, owner=owner)
