"""The chaos suite: every drill scenario against a real cluster, through the CLI.

Each run must lose no acknowledged row, never let two nodes accept writes, resume writes
through :5000 within ttl + generous slack, and end Converged with the failed machine back
in its role, repaired by an operator without manual steps.

- An asynchronous cluster, repaired by `pgha-operator run` in the background: switchover,
  crash-replica, kill-etcd-member, etcd-quorum-loss. None of them can lose a commit: a
  switchover and a demotion stop PostgreSQL cleanly (walsenders ship all WAL first).
- A `synchronous: strict` cluster for the faults that take the primary away:
  crash-primary and freeze-primary with fencing off (the leader lease decides; repaired
  by the operator the drill runs itself, nobody else holding the lock), then
  crash-primary under a running operator that fences. With asynchronous replication a
  primary that dies or hangs can take its last acknowledged commits with it (measured:
  one row in one freeze run, docs/drill.md), so "zero acknowledged rows lost" is asserted
  where it is a guarantee.
"""

from __future__ import annotations

import json
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pgha_operator.drill import pgclient
from tests.integration.cluster_helpers import (
    Operator,
    cli,
    dsn,
    kill_leftovers,
    make_state_root,
    query,
    status,
    wait_for,
    write_manifest,
)

pytestmark = pytest.mark.integration

TTL = 20  # the fast profile's
SLACK = 40  # "within ttl + generous slack": a failure signal, never a speed assertion


@dataclass
class Cluster:
    root: Path
    manifest: Path
    state: Path

    def drill(self, scenario: str, *extra: str) -> dict[str, Any]:
        res = cli(
            "drill",
            "-f",
            str(self.manifest),
            "--state-dir",
            str(self.state),
            "--scenario",
            scenario,
            "--json",
            "--yes",
            *extra,
            timeout=480,
        )
        context = f"drill {scenario} exited {res.returncode}\n{res.stdout}\n{res.stderr[-3000:]}"
        assert res.returncode in (0, 1) and res.stdout.strip(), context
        report = json.loads(res.stdout)
        assert report["scenario"] == scenario and len(report["runs"]) == 1, context
        assert (res.returncode == 0) == (report["verdict"] == "PASS"), context
        report["context"] = context
        return report

    def status(self) -> dict[str, Any]:
        return status(self.manifest, self.state)

    def roles(self) -> dict[str, str]:
        return {m["name"]: m["role"] for m in self.status()["postgres"]["members"]}


def bring_up(name: str, network: str, body: str) -> Iterator[Cluster]:
    root = make_state_root()
    manifest = write_manifest(root, name, network, body)
    state = root / "state"
    try:
        res = cli("apply", "-f", str(manifest), "--state-dir", str(state), "--timeout", "240")
        assert res.returncode == 0, f"apply failed:\n{res.stdout}\n{res.stderr}"
        yield Cluster(root, manifest, state)
    finally:
        cli("destroy", "-f", str(manifest), "--state-dir", str(state), "--yes", timeout=180)
        kill_leftovers(state)
        shutil.rmtree(root, ignore_errors=True)


def test_connect_gives_up_at_its_deadline_and_closes_the_socket() -> None:
    """A frozen postmaster accepts TCP and never answers; libpq would wait 2 s at least."""
    silent = socket.socket()
    silent.bind(("127.0.50.250", 0))
    silent.listen(16)
    try:
        port = silent.getsockname()[1]
        before = len(list(Path("/proc/self/fd").iterdir()))
        for _ in range(3):
            started = time.monotonic()
            with pytest.raises(pgclient.ClientError) as err:
                pgclient.connect(f"host=127.0.50.250 port={port} user=x dbname=x", started + 0.3)
            assert err.value.outcome == pgclient.Outcome.FAILED
            assert 0.25 < time.monotonic() - started < 1.5
        assert len(list(Path("/proc/self/fd").iterdir())) == before  # nothing left open
    finally:
        silent.close()


def assert_safe(report: dict[str, Any]) -> dict[str, Any]:
    """What every run must show, whatever the fault."""
    run = report["runs"][0]
    context = report["context"]
    assert run["ackedRows"] > 0, context
    assert run["ackedLost"] == 0, context
    assert run["failedButPresent"] == 0, context  # a "failed" write never committed
    assert run["ackedByOldPrimaryAfterFailover"] == 0, context
    assert run["writesResumedSeconds"] is not None, context
    assert run["writeGapSeconds"] <= TTL + SLACK, context
    assert run["rejoinedSeconds"] is not None, context
    assert run["convergedSeconds"] is not None, context
    return run


def assert_pass(report: dict[str, Any]) -> dict[str, Any]:
    run = assert_safe(report)
    assert run["dualPrimarySeconds"] == 0, report["context"]
    assert report["verdict"] == "PASS", report["context"]
    return run


# --- an asynchronous cluster, repaired by `pgha-operator run` ------------------------------

ASYNC = """  drills: allowed
  etcd: {members: 3}
  postgres: {instances: 3, parameters: {max_connections: 50}}
  loadBalancer: {instances: 1}
"""


@pytest.fixture(scope="class")
def async_cluster() -> Iterator[Cluster]:
    yield from bring_up("drills", "127.0.50.0/24", ASYNC)


def start_operator(cluster: Cluster) -> Operator:
    op = Operator(cluster.manifest, cluster.state)
    try:
        # It holds the cluster's lock once it says it runs; from then on drills see it.
        wait_for("the operator running", lambda: "running (state" in op.output(), timeout=60)
    except BaseException:
        op.stop()
        raise
    return op


@pytest.fixture(scope="class")
def operator(async_cluster: Cluster) -> Iterator[Operator]:
    op = start_operator(async_cluster)
    try:
        yield op
    finally:
        op.stop()


@pytest.fixture
def cluster(async_cluster: Cluster) -> Cluster:
    return async_cluster


class TestAsynchronousCluster:
    def test_abandoned_statement_is_closed_on_the_server(self, cluster: Cluster) -> None:
        """LAB-NOTES: abandoned client-side timeouts once left backends stuck on an old
        primary. A statement past its deadline is given up *and* its connection closed."""
        conninfo = dsn(cluster.manifest, cluster.state)
        conn = pgclient.connect(conninfo, time.monotonic() + 5)
        pid = pgclient.query(conn, "SELECT pg_backend_pid()", deadline=time.monotonic() + 5)[0][0]
        started = time.monotonic()
        with pytest.raises(pgclient.ClientError) as err:
            pgclient.query(conn, "SELECT pg_sleep(5)", deadline=started + 0.5)
        assert err.value.outcome == pgclient.Outcome.UNKNOWN
        assert time.monotonic() - started < 3  # gave up at its deadline, not after 5 s
        assert not pgclient.usable(conn)
        conn.finish()

        def backend_gone() -> bool:
            rows = query(
                conninfo, "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (int(pid),)
            )
            return rows[0][0] == 0

        # HAProxy closes its side; PostgreSQL notices when pg_sleep ends. An abandoned but
        # open connection would stay, idle, after that.
        wait_for("the abandoned backend gone", backend_gone, timeout=60)

    def test_switchover(self, cluster: Cluster, operator: Operator) -> None:
        report = cluster.drill("switchover")
        assert report["operator"] == "running"  # the drill left the repairs to it
        run = assert_pass(report)
        old = run["oldPrimary"]
        assert run["newPrimary"] not in (None, old)
        assert run["oldPrimaryStoppedWritesSeconds"] is not None
        assert cluster.roles()[old] == "replica"

    def test_crash_replica(self, cluster: Cluster, operator: Operator) -> None:
        run = assert_pass(cluster.drill("crash-replica"))
        assert run["newPrimary"] is None  # the primary stayed
        assert run["oldPrimaryStoppedWritesSeconds"] is None
        assert cluster.roles()[run["targets"][0]] == "replica"

    def test_kill_etcd_member(self, cluster: Cluster, operator: Operator) -> None:
        run = assert_pass(cluster.drill("kill-etcd-member"))
        assert run["newPrimary"] is None
        assert run["targets"][0].startswith("etcd")

    def test_etcd_quorum_loss_is_read_only_then_writable(
        self, cluster: Cluster, operator: Operator
    ) -> None:
        report = cluster.drill("etcd-quorum-loss")
        run = assert_pass(report)
        assert len(run["targets"]) == 2
        # Read-only, not split: no node took a write for seconds before etcd came back...
        assert run["readOnlyHeldSeconds"] >= 4, report["context"]
        # ... and writes flowed again once it did.
        assert run["writesResumedSeconds"] > run["faultSeconds"] - 0.5, report["context"]


# --- synchronous: strict: the lease, then fencing -----------------------------------------

STRICT = """  drills: allowed
  failover: {fencing: "off"}
  etcd: {members: 3}
  postgres: {instances: 3, parameters: {max_connections: 50}, synchronous: strict}
  loadBalancer: {instances: 1}
"""


@pytest.fixture(scope="class")
def strict_cluster() -> Iterator[Cluster]:
    yield from bring_up("drillsync", "127.0.51.0/24", STRICT)


class TestStrictSynchronousCluster:
    def test_crash_primary_lease(self, strict_cluster: Cluster) -> None:
        cluster = strict_cluster
        report = cluster.drill("crash-primary")
        assert report["synchronous"] == "strict"
        assert report["operator"] == "drill"  # nobody else held the lock
        run = assert_pass(report)
        # No fencing: nobody is promoted before the old leader's lease can have expired
        # (its key was last refreshed at most one loop_wait before the crash).
        assert run["newPrimaryAcceptedSeconds"] >= TTL - 2, report["context"]
        assert cluster.roles()[run["oldPrimary"]] in ("replica", "sync_standby")

    def test_freeze_primary_lease(self, strict_cluster: Cluster) -> None:
        # Nothing fences the thawed primary here, but its commits wait for a synchronous
        # standby it no longer has: it never acknowledges a write next to the new primary.
        run = assert_pass(strict_cluster.drill("freeze-primary"))
        assert run["newPrimary"] not in (None, run["oldPrimary"])

    def test_crash_primary_fenced_by_a_running_operator(self, strict_cluster: Cluster) -> None:
        cluster = strict_cluster
        cluster.manifest.write_text(
            cluster.manifest.read_text().replace('fencing: "off"', 'fencing: "auto"')
        )
        op = start_operator(cluster)
        try:
            report = cluster.drill("crash-primary")
        finally:
            op.stop()
        assert report["operator"] == "running"
        run = assert_pass(report)
        assert run["newPrimary"] not in (None, run["oldPrimary"])
        # The operator fenced the dead machine and released its key (docs/architecture.md).
        assert "machine powered off" in op.output(), op.output()[-3000:]
        assert cluster.roles()[run["oldPrimary"]] in ("replica", "sync_standby")
        # The running operator reported the death at once, and the drill read its journal.
        timeline = run["timeline"]
        assert timeline["seenBy"] == "event", timeline
        assert None not in (timeline["deathSeen"], timeline["keyReleased"], timeline["firstWrite"])
        assert report["timelineMedians"]["runs"] == 1
