"""The backup facts of one cycle (spec.backup): whether the repository holds the cluster's
stanza, and the primary's pg_stat_archiver."""

from __future__ import annotations

import posixpath

from pgha_operator.core.facts.backup import (
    ArchiverFacts,
    BackupFacts,
    BackupSet,
    destroyed_marker,
    parse_backup_info,
    parse_destroyed_marker,
    parse_timeline_marker,
    timeline_marker,
)
from pgha_operator.core.facts.types import PatroniFacts
from pgha_operator.core.plan import Desired
from pgha_operator.core.render import SUPERUSER, Secrets
from pgha_operator.core.spec.backup import repository_path
from pgha_operator.shell.clients import Clients, ComponentError
from pgha_operator.shell.hosts.base import HostError
from pgha_operator.shell.providers.base import Provider


def stanza_file(repository: str, stanza: str) -> str:
    """What stanza-create writes first; its presence is the stanza's."""
    return posixpath.join(repository, "backup", stanza, "backup.info")


def observe_backup(
    desired: Desired,
    provider: Provider,
    up: set[str],
    patroni: PatroniFacts,
    secrets: Secrets,
    clients: Clients,
    timeout: float,
) -> BackupFacts | None:
    backup = desired.cluster.spec.backup
    if backup is None:
        return None
    nodes = [n for n in desired.topology.postgres if n in up]
    if not nodes:
        return None
    # The repository is a directory of the nodes' host (local provider): any node reads it.
    repository = repository_path(backup, desired.cluster.name)
    try:
        info = provider.host(nodes[0]).read(stanza_file(repository, desired.cluster.name))
    except HostError:
        return None
    marker = _read(provider, nodes[0], destroyed_marker(repository, desired.cluster.name))
    pushed = _read(provider, nodes[0], timeline_marker(repository, desired.cluster.name))
    archiver, system_id = _archiver(patroni, secrets, clients, timeout)
    parsed = parse_backup_info(info.decode(errors="replace")) if info is not None else None
    return BackupFacts(
        stanza_exists=info is not None,
        stanza_system_id=parsed.system_id if parsed else None,
        archiver=archiver,
        system_id=system_id,
        last_backup=parsed.backups[-1] if parsed and parsed.backups else None,
        last_full=_last_full(parsed.backups) if parsed else None,
        destroyed_system_id=parse_destroyed_marker(marker.decode()) if marker else None,
        pushed_timeline=parse_timeline_marker(pushed.decode()) if pushed else None,
    )


def _read(provider: Provider, machine: str, path: str) -> bytes | None:
    try:
        return provider.host(machine).read(path)
    except HostError:
        return None


def _last_full(backups: tuple[BackupSet, ...]) -> BackupSet | None:
    fulls = [b for b in backups if b.type == "full"]
    return fulls[-1] if fulls else None


def _archiver(
    patroni: PatroniFacts, secrets: Secrets, clients: Clients, timeout: float
) -> tuple[ArchiverFacts | None, int | None]:
    leader = patroni.leader
    if leader is None or leader.state != "running":
        return None, None
    db = clients.postgres(leader.host, leader.port, SUPERUSER, secrets.superuser_password, timeout)
    try:
        return db.archiver()
    except ComponentError:
        return None, None
