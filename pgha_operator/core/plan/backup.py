"""spec.backup in the plan: the repository's stanza, created once archiving can work (PURE).

Level-based: the observation says whether the repository holds the cluster's stanza; until
it does, and once the primary runs with archiving in force (its pgBackRest files written,
no restart pending for archive_mode), the stanza is created and checked on the primary. A
stanza of another database is left alone, unless `destroy` marked it as a destroyed
cluster's of this name: then this cluster continues it (stanza-upgrade). Once the stanza
is there, each new timeline of the primary (a failover or switchover) has the older
timelines' WAL still in its pg_wal pushed once (archive_mode=on: docs/backup.md).
"""

from __future__ import annotations

from pgha_operator.core.backup_actions import (
    AdoptStanza,
    BackupAction,
    CreateStanza,
    PushOlderTimelineWal,
)
from pgha_operator.core.desired import Desired, content_hash
from pgha_operator.core.facts.backup import destroyed_marker, timeline_marker
from pgha_operator.core.facts.observed import Observed
from pgha_operator.core.render.pgbackrest import CONFIG_NAME
from pgha_operator.core.spec.backup import BackupSpec, repository_path


def backup_actions(desired: Desired, observed: Observed) -> list[BackupAction]:
    backup = desired.cluster.spec.backup
    facts = observed.backup
    if backup is None or facts is None:
        return []
    if facts.stanza_exists and not facts.adoptable:
        # ours, or another database's: reported (BackupsHealthy), never overwritten
        return [] if facts.foreign_stanza else _after_failover(desired, observed, backup)
    leader = observed.patroni.leader
    if leader is None or leader.state != "running" or leader.pending_restart:
        return []  # archive_mode takes a restart: the rolling restart comes first
    mine = [f for f in desired.files if f.machine == leader.name and f.path.endswith(CONFIG_NAME)]
    if not mine or any(
        observed.files.get((f.machine, f.path)) != content_hash(f.content) for f in mine
    ):
        return []  # written by the file step of this or the next cycle
    repository = repository_path(backup, desired.cluster.name)
    if facts.adoptable:
        marker = destroyed_marker(repository, desired.cluster.name)
        return [AdoptStanza(leader.name, repository, mine[0].owner, marker)]
    return [CreateStanza(leader.name, repository, mine[0].owner)]


def _after_failover(desired: Desired, observed: Observed, backup: BackupSpec) -> list[BackupAction]:
    """Once per new timeline of the primary: its older timelines' WAL into the repository."""
    leader = observed.patroni.leader
    facts = observed.backup
    if leader is None or leader.state != "running" or facts is None or not leader.timeline:
        return []
    if leader.timeline <= (facts.pushed_timeline or 1):
        return []
    repository = repository_path(backup, desired.cluster.name)
    owner = next((f.owner for f in desired.files if f.path.endswith(CONFIG_NAME)), None)
    marker = timeline_marker(repository, desired.cluster.name)
    return [PushOlderTimelineWal(leader.name, leader.timeline, owner, marker)]
