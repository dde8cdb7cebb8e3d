"""`pgha-operator drill --scenario restore`: prove the backups restore, row by row.

Each run: the drill's clients write through the load balancer, a full backup is taken,
they keep writing, a target time T is picked in the middle of the writes, they write on,
then stop; the archive is caught up (a WAL switch, archived). A clone of the cluster (one
etcd member, one node, one HAProxy, on its own addresses: `--clone-network`) is built
from the repository to T (spec.bootstrap.recovery) by the operator in this process, and
the drill compares: every row acknowledged before T must be in the clone, none sent after
T. RPO: seconds of acknowledged writes before T the clone lost (goal 0). RTO: seconds from
the clone's apply to its first accepted write. The clone is destroyed with its backups.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from pgha_operator.core.render import APP_DATABASE, APP_USER, SUPERUSER
from pgha_operator.core.spec import Cluster
from pgha_operator.core.spec.backup import repository_path
from pgha_operator.drill.restore_check import RestoreRun, judge
from pgha_operator.drill.scenarios import _sql, wait_converged
from pgha_operator.drill.target import DrillError, DrillRefused, Target
from pgha_operator.drill.writer import _TIMELINE, SCHEMA_SQL, Writer
from pgha_operator.shell.backups import delete_backups, take_backup
from pgha_operator.shell.controller import Controller

WRITE_SECONDS = 3.0  # of writes after the backup before T, and again after T
CLONE_TIMEOUT = 600.0
CLONE_SUFFIX = "-rd"


@dataclass(frozen=True)
class RestoreDrillOptions:
    repeat: int = 1
    clients: int = 4
    clone_network: str | None = None  # default: the next /24 after the cluster's


def restore_refusal(ctl: Controller, yes: bool) -> str | None:
    cluster = ctl.cluster
    if cluster.spec.drills != "allowed":
        return (
            f"cluster {cluster.name} does not allow drills; set `spec.drills: allowed` in its "
            f"manifest ({', '.join(ctl.paths)})"
        )
    if cluster.spec.backup is None:
        return f"cluster {cluster.name} has no spec.backup: nothing to restore from"
    if not yes:
        return (
            f"the restore drill writes into cluster {cluster.name}, takes backups and builds "
            "a clone beside it; add --yes to confirm"
        )
    return None


def clone_network(cluster: Cluster, given: str | None) -> str:
    if given:
        return given
    network = getattr(cluster.spec.provider, "network", None)
    if network is None:
        raise DrillRefused("give --clone-network: the cluster's manifest names no network")
    base = ipaddress.IPv4Network(str(network)).network_address
    return f"{ipaddress.IPv4Address(int(base) + 256)}/24"


def clone_manifest(source: Cluster, name: str, network: str, target: str) -> str:
    """A one-node clone of `source` restored to `target`, archiving into its own stanza.
    The source's PostgreSQL parameters: a replay with a lower max_connections (and the
    like) than the source's pauses instead of promoting."""
    assert source.spec.backup is not None
    repository = repository_path(source.spec.backup, source.name)
    parameters = json.dumps(dict(source.spec.postgres.parameters))
    return f"""apiVersion: pgha/v1
kind: Cluster
metadata: {{name: {name}}}
spec:
  provider: {{type: local, network: {network}}}
  profile: {source.spec.profile}
  etcd: {{members: 1}}
  postgres: {{instances: 1, parameters: {parameters}}}
  loadBalancer: {{instances: 1}}
  backup: {{}}
  bootstrap:
    recovery: {{source: {repository}, stanza: {source.name}, targetTime: '{target}'}}
"""


def run_restore_drill(
    paths: Sequence[str],
    state_dir: Path | None,
    cluster_name: str | None,
    options: RestoreDrillOptions,
    yes: bool,
    on_run: Callable[[RestoreRun], None] | None = None,
) -> list[RestoreRun]:
    ctl = Controller(paths, state_dir=state_dir, cluster_name=cluster_name)
    reason = restore_refusal(ctl, yes)
    if reason:
        raise DrillRefused(reason)
    target = Target.of(ctl)
    network = clone_network(ctl.cluster, options.clone_network)
    runs = []
    for number in range(1, options.repeat + 1):
        run = restore_once(target, options, number, network)
        runs.append(run)
        if on_run:
            on_run(run)
    return runs


def restore_once(
    target: Target, options: RestoreDrillOptions, number: int, network: str
) -> RestoreRun:
    ok, decision = wait_converged(target, 240)
    if not ok:
        raise DrillError(f"cluster {target.cluster.name} is not converged ({decision})")
    _sql(target.lb_conninfo(), SCHEMA_SQL)
    run_id = f"restore-{int(time.time())}-{number}"
    writer = Writer(target.lb_conninfo(), run_id, options.clients)
    writer.start()
    try:
        taken = take_backup(target.ctl, "full")
        time.sleep(WRITE_SECONDS)
        t_mono, t_wall = time.monotonic(), datetime.now(UTC)
        time.sleep(WRITE_SECONDS)
    finally:
        writer.stop()
    catch_up_archive(target)
    stamp = t_wall.isoformat(sep=" ")
    restored, rto, timeline = restore_clone(target, network, stamp, run_id)
    judged = judge(writer.attempts, t_mono, restored)
    label = taken.info.last.label if taken.info.last else "?"
    return RestoreRun(
        number,
        stamp,
        label,
        len(judged.before),
        len(judged.after),
        judged.missing,
        judged.extra,
        judged.rpo_seconds,
        rto,
        timeline,
    )


def _superuser_on_primary(target: Target) -> str:
    _, observed = target.ctl.observe(secrets=target.secrets)
    leader = observed.patroni.leader
    if leader is None:
        raise DrillError("no primary to switch the WAL on")
    return make_conninfo(
        host=target.topology.address(leader.name),
        port=target.topology.pg_port,
        user=SUPERUSER,
        password=target.secrets.superuser_password,
        dbname="postgres",
        sslmode="verify-full",
        sslrootcert=target.tls.ca,
        connect_timeout=3,
    )


def catch_up_archive(target: Target, timeout: float = 60) -> None:
    """Everything written so far in the repository: a WAL switch, archived."""
    with psycopg.connect(_superuser_on_primary(target), autocommit=True) as conn:
        segment = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]  # type: ignore[index]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            row = conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()
            if row and row[0] and row[0] >= segment:
                return
            time.sleep(0.2)
    raise DrillError(f"{segment} was not archived within {timeout:.0f} s")


def restore_clone(
    target: Target, network: str, stamp: str, run_id: str
) -> tuple[set[tuple[int, int]], float | None, int | None]:
    """The clone built to `stamp`, its rows of the drill, the RTO, its timeline; destroyed."""
    root = Path(tempfile.mkdtemp(prefix="pgha-restore-drill-"))
    root.chmod(0o755)
    name = f"{target.cluster.name[: 32 - len(CLONE_SUFFIX)]}{CLONE_SUFFIX}"
    manifest = root / f"{name}.yaml"
    manifest.write_text(clone_manifest(target.cluster, name, network, stamp))
    clone = Controller([str(manifest)], state_dir=root / "state")
    first_write: list[float] = []
    stop = threading.Event()
    try:
        started = time.monotonic()
        watcher = threading.Thread(
            target=_first_write, args=(clone, first_write, stop), daemon=True
        )
        watcher.start()
        clone.prepare()
        report = clone.apply(CLONE_TIMEOUT)
        if not report.converged:
            raise DrillError(f"the clone did not converge ({report.phase}): {report.decision}")
        watcher.join(timeout=30)
        rto = first_write[0] - started if first_write else None
        return _clone_rows(clone, run_id), rto, _clone_timeline(clone)
    finally:
        stop.set()
        clone.destroy()
        delete_backups(clone.cluster)
        shutil.rmtree(root, ignore_errors=True)


def _clone_conninfo(clone: Controller) -> str | None:
    secrets = clone.state.secrets()
    if secrets is None:
        return None
    topo = clone.topology
    return make_conninfo(
        host=topo.address(topo.postgres[0]),
        port=topo.pg_port,
        user=APP_USER,
        password=secrets.app_password,
        dbname=APP_DATABASE,
        sslmode="verify-full",
        sslrootcert=clone.state.client_tls().ca,
        connect_timeout=2,
    )


def _first_write(clone: Controller, found: list[float], stop: threading.Event) -> None:
    """The moment the clone first accepts a write (as its app role, on its node)."""
    while not stop.is_set():
        try:
            conninfo = _clone_conninfo(clone)
            if conninfo:
                with psycopg.connect(conninfo, autocommit=True) as conn:
                    conn.execute(
                        "CREATE TABLE IF NOT EXISTS pgha_drill.clone_probe (at timestamptz)"
                    )
                    conn.execute("INSERT INTO pgha_drill.clone_probe VALUES (now())")
                found.append(time.monotonic())
                return
        except Exception:  # noqa: BLE001 - not up yet, not restored yet, not promoted yet
            pass
        stop.wait(0.2)


def _clone_rows(clone: Controller, run_id: str) -> set[tuple[int, int]]:
    conninfo = _clone_conninfo(clone)
    if conninfo is None:
        raise DrillError("the clone has no passwords: it was never applied")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT client_id, seq FROM pgha_drill.writes WHERE run_id = %s", (run_id,)
        ).fetchall()
    return {(int(c), int(s)) for c, s in rows}


def _clone_timeline(clone: Controller) -> int | None:
    conninfo = _clone_conninfo(clone)
    if conninfo is None:
        return None
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(f"SELECT {_TIMELINE}").fetchone()
    return int(row[0]) if row else None
