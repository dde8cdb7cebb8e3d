"""Day-2 changes on a live cluster while a writer keeps inserting through :5000.

The tests share one cluster and run in file order; every change must lose no acknowledged
row, and `plan` must show the change before it is made and `no changes` after.
"""

from __future__ import annotations

import pwd
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.integration.cluster_helpers import (
    Operator,
    Writer,
    cli,
    dsn,
    etcdctl_tls,
    kill_leftovers,
    make_state_root,
    process_uid,
    query,
    service_pid,
    status,
    wait_for,
    write_manifest,
)

pytestmark = pytest.mark.integration

NET = "127.0.22"


def body(pg: int = 3, etcd: int = 3, params: str = "{}") -> str:
    return f"""  etcd: {{members: {etcd}}}
  postgres: {{instances: {pg}, parameters: {params}}}
  loadBalancer: {{instances: 1}}
"""


@dataclass
class Live:
    root: Path
    manifest: Path
    state: Path
    failed_writes: dict[str, int] = field(default_factory=dict)

    def args(self) -> list[str]:
        return ["-f", str(self.manifest), "--state-dir", str(self.state)]

    def edit(self, text: str) -> None:
        write_manifest(self.root, "daytwo", f"{NET}.0/24", text)

    def plan(self) -> str:
        return cli("plan", *self.args(), check=True).stdout

    def apply(self) -> None:
        res = cli("apply", *self.args(), "--timeout", "240")
        assert res.returncode == 0, f"apply failed:\n{res.stdout}\n{res.stderr}"
        assert self.plan().strip() == "no changes"

    def status(self) -> dict:
        return status(self.manifest, self.state)

    def members(self) -> dict[str, dict]:
        return {m["name"]: m for m in self.status()["postgres"]["members"]}

    def primary(self) -> str:
        return next(n for n, m in self.members().items() if m["role"] == "primary")

    def node_conninfo(self, name: str) -> str:
        address = next(
            m["address"] for m in self.status()["postgres"]["members"] if m["name"] == name
        )
        return dsn(self.manifest, self.state).replace(
            f"host={NET}.201 port=5000", f"host={address} port=5432"
        )

    def show_everywhere(self, setting: str) -> dict[str, str]:
        return {n: query(self.node_conninfo(n), f"SHOW {setting}")[0][0] for n in self.members()}


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    root = make_state_root()
    manifest = write_manifest(root, "daytwo", f"{NET}.0/24", body())
    c = Live(root, manifest, root / "state")
    try:
        c.apply()
        yield c
    finally:
        print(f"\nfailed write attempts per change: {c.failed_writes}")
        cli("destroy", *c.args(), "--yes", timeout=180)
        kill_leftovers(c.state)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def writer(live: Live, request: pytest.FixtureRequest) -> Iterator[Writer]:
    with Writer(dsn(live.manifest, live.state)) as w:
        yield w
    assert w.lost() == [], f"acknowledged rows lost: {w.lost()[:20]}"
    live.failed_writes[request.node.name] = w.failed


def test_scale_postgres_up_to_4(live: Live, writer: Writer) -> None:
    live.edit(body(pg=4))
    assert "create machine node4" in live.plan()
    live.apply()
    members = live.members()
    assert sorted(members) == ["node1", "node2", "node3", "node4"]
    assert members["node4"]["role"] == "replica" and members["node4"]["state"] == "streaming"
    backends = {(b["backend"], b["name"]) for b in live.status()["loadBalancer"]["backends"]}
    assert ("replicas", "node4") in backends


def test_switchover_to_a_named_node(live: Live, writer: Writer) -> None:
    """Assisted (no operator runs: the command holds the lease): the operator releases the
    leader key once node1 shut down and node4 holds its WAL, not Patroni ~2 s later."""
    since = time.monotonic()
    res = cli("switchover", *live.args(), "--to", "node4")
    assert res.returncode == 0, res.stderr
    assert "assisted=True" in res.stderr, res.stderr
    # The speed is bench/failover.py --switchover's to measure; here only a generous bound.
    assert writer.longest_gap(since) < 10
    assert live.primary() == "node4"
    assert (
        query(dsn(live.manifest, live.state), "SELECT host(inet_server_addr())")[0][0]
        == f"{NET}.14"
    )
    res = cli("switchover", *live.args(), "--to", "node9")
    assert res.returncode == 1 and "no healthy candidate" in res.stderr


def test_switchover_beside_a_running_operator_borrows_its_lease(live: Live, writer: Writer) -> None:
    """The running operator leads: the command releases the key under that operator's lease
    (its key in etcd names the process holding the state dir's operator lock)."""
    op = Operator(live.manifest, live.state)
    try:
        wait_for("the operator leading", lambda: "holds the leader lease" in op.output(), 60)
        for node in ("node1", "node4"):  # and back: the next test removes node4, the primary
            wait_for(f"{node} streaming", lambda n=node: live.members()[n]["state"] == "streaming")
            since = time.monotonic()
            res = cli("switchover", *live.args(), "--to", node)
            assert res.returncode == 0, res.stderr
            assert "beside the running operator" in res.stderr
            assert "assisted=True" in res.stderr, res.stderr
            assert writer.longest_gap(since) < 10
            assert live.primary() == node
    finally:
        op.stop()


def test_scale_postgres_down_to_2_removes_the_primary_safely(live: Live, writer: Writer) -> None:
    live.edit(body(pg=2))
    plan = live.plan()
    assert "switch over node4 ->" in plan or "stop patroni on node3" in plan
    live.apply()
    assert sorted(live.members()) == ["node1", "node2"]
    assert live.primary() in ("node1", "node2")
    assert sorted(p.name for p in (live.state / "machines").iterdir()) == [
        "etcd1", "etcd2", "etcd3", "haproxy1", "node1", "node2"
    ]  # fmt: skip


def etcdctl_members(live: Live) -> list[str]:
    endpoints = ",".join(f"https://{NET}.{100 + i}:2379" for i in range(1, 6))
    res = subprocess.run(
        ["etcdctl", f"--endpoints={endpoints}", *etcdctl_tls(live.state), "member", "list"],
        capture_output=True, text=True, timeout=30, env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    return sorted(line.split(", ")[2] for line in res.stdout.strip().splitlines())


def assert_etcd_runs_as_etcd(live: Live, members: int) -> None:
    """Least privilege: every etcd process runs as user etcd, never root."""
    etcd_uid = pwd.getpwnam("etcd").pw_uid
    pids = [service_pid(live.state, f"etcd{i}", "etcd") for i in range(1, members + 1)]
    assert None not in pids, pids
    assert {process_uid(pid) for pid in pids if pid} == {etcd_uid}


def test_etcd_3_to_5_to_3(live: Live, writer: Writer) -> None:
    live.edit(body(pg=2, etcd=5))
    assert "add etcd member etcd4" in live.plan()
    live.apply()
    assert etcdctl_members(live) == ["etcd1", "etcd2", "etcd3", "etcd4", "etcd5"]
    assert_etcd_runs_as_etcd(live, 5)  # the joined learners too
    live.edit(body(pg=2, etcd=3))
    assert "remove etcd member etcd" in live.plan()
    live.apply()
    assert etcdctl_members(live) == ["etcd1", "etcd2", "etcd3"]
    etcd = live.status()["etcd"]["members"]
    assert len(etcd) == 3 and all(m["healthy"] and not m["isLearner"] for m in etcd)


def test_restart_parameter_is_applied_by_a_rolling_restart(live: Live, writer: Writer) -> None:
    live.edit(body(pg=2, params="{max_connections: 150}"))
    assert "PATCH Patroni /config: postgresql.parameters.max_connections" in live.plan()
    live.apply()
    assert live.show_everywhere("max_connections") == {"node1": "150", "node2": "150"}
    assert not any(m.get("pendingRestart") for m in live.members().values())


def test_reload_parameter_needs_no_restart(live: Live, writer: Writer) -> None:
    started = {
        n: query(live.node_conninfo(n), "SELECT pg_postmaster_start_time()")[0][0]
        for n in live.members()
    }
    live.edit(body(pg=2, params="{max_connections: 150, work_mem: 8MB}"))
    assert "postgresql.parameters.work_mem" in live.plan()
    live.apply()
    wait_for(
        "work_mem on every node",
        lambda: live.show_everywhere("work_mem") == {"node1": "8MB", "node2": "8MB"},
        timeout=30,
    )
    after = {
        n: query(live.node_conninfo(n), "SELECT pg_postmaster_start_time()")[0][0]
        for n in live.members()
    }
    assert after == started


def test_running_operator_picks_up_a_manifest_edit(live: Live, writer: Writer) -> None:
    generation = live.status().get("observedGeneration", 0)
    op = Operator(live.manifest, live.state)
    try:
        time.sleep(2)
        live.edit(body(pg=2, params="{max_connections: 150, work_mem: 16MB}"))
        wait_for(
            "the edit applied by the running operator",
            lambda: live.show_everywhere("work_mem") == {"node1": "16MB", "node2": "16MB"},
            timeout=60,
        )
        assert live.status()["observedGeneration"] > generation
    finally:
        op.stop()
    assert "PATCH Patroni /config" in op.output()
