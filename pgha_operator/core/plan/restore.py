"""In-place point-in-time restore (`pgha-operator restore --to-time T`): the steps, in the
order that is safe, and what the restore loses, in plain words (PURE).

The order: replicas stop first, then the primary (none is promoted meanwhile: no Patroni
runs), Patroni's state for the cluster is cleared in etcd (its last known position is
after T: no restored node would ever be healthy enough to lead), the primary's data
directory is restored to T and replayed in a private PostgreSQL (no address, its own
socket) until promoted onto a new timeline, with the roles given the cluster's passwords;
then Patroni starts there, a full backup is taken on the new timeline (so replicas and the
next restore start from it, not from a backup on the abandoned timeline), and the
replicas, wiped, are rebuilt by the operator's usual convergence.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pgha_operator.core.facts.backup import BackupSet

StepKind = Literal["stop", "clear-dcs", "restore", "start-primary", "backup", "wipe", "converge"]


@dataclass(frozen=True)
class RestoreStep:
    kind: StepKind
    machines: tuple[str, ...]
    describe: str


@dataclass(frozen=True)
class RestorePlan:
    cluster: str
    target: datetime
    primary: str
    replicas: tuple[str, ...]
    backup: BackupSet  # the backup restored: the newest that ended before the target
    steps: tuple[RestoreStep, ...]
    loss: str  # what is lost, in plain words


class RestoreRefused(ValueError):
    """The restore cannot reach the target (no backup before it, a target in the future)."""


def backup_before(backups: tuple[BackupSet, ...], target: datetime) -> BackupSet:
    usable = [b for b in backups if not b.error and b.stop <= target.timestamp()]
    if not usable:
        raise RestoreRefused(
            f"no backup ends before {target.isoformat(sep=' ')}: the repository cannot "
            "reach that time (`pgha-operator backups` lists what it holds)"
        )
    return max(usable, key=lambda b: b.stop)


def restore_plan(
    cluster: str,
    nodes: tuple[str, ...],
    primary: str | None,
    backups: tuple[BackupSet, ...],
    target: datetime,
    now: datetime,
) -> RestorePlan:
    """The plan for restoring `cluster` to `target`, given the manifest's PostgreSQL nodes,
    the current primary (None: none runs; the first node is restored) and the stanza's
    backups."""
    if target >= now:
        raise RestoreRefused(
            f"{target.isoformat(sep=' ')} is not in the past (now {now.isoformat(sep=' ')})"
        )
    chosen = backup_before(backups, target)
    first = primary if primary in nodes else nodes[0]
    replicas = tuple(n for n in nodes if n != first)
    steps = [
        *(
            [RestoreStep("stop", replicas, f"stop Patroni (and PostgreSQL) on {_names(replicas)}")]
            if replicas
            else []
        ),
        RestoreStep("stop", (first,), f"stop Patroni (and PostgreSQL) on the primary {first}"),
        RestoreStep("clear-dcs", (), f"clear Patroni's state of cluster {cluster} in etcd"),
        RestoreStep(
            "restore",
            (first,),
            f"restore {first}'s data directory from backup {chosen.label}, replay the archive "
            f"up to {target.isoformat(sep=' ')} and promote it (a new timeline); set the "
            "roles' passwords to the cluster's",
        ),
        RestoreStep("start-primary", (first,), f"start Patroni on {first}: the primary"),
        RestoreStep("backup", (first,), "take a full backup on the new timeline"),
    ]
    if replicas:
        steps.append(
            RestoreStep("wipe", replicas, f"empty the data directories of {_names(replicas)}")
        )
    steps.append(
        RestoreStep(
            "converge",
            replicas,
            "bring the cluster back"
            + (f": {_names(replicas)} rebuilt as replicas" if replicas else ""),
        )
    )
    return RestorePlan(
        cluster, target, first, replicas, chosen, tuple(steps), loss_text(cluster, target, now)
    )


def loss_text(cluster: str, target: datetime, now: datetime) -> str:
    lost = int((now - target).total_seconds())
    return (
        f"Everything committed in cluster {cluster} after {target.isoformat(sep=' ')} is "
        f"lost: about {_span(lost)} of writes, on every node; the database is down (no "
        "reads, no writes) until the restore ends. The backups and archived WAL after that "
        "time stay in the repository."
    )


def _span(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _names(machines: tuple[str, ...]) -> str:
    return ", ".join(machines)
