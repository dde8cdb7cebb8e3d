"""Operator HA on the local provider: two `run` operators for one cluster, one leads through
the lease in the cluster's etcd; kill -9 the leader and the standby takes over and repairs.

Prints the takeover figures (kill of the leader -> first repair by the new leader)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from pgha_operator.core.leadership import TTL_SECONDS
from tests.integration.cluster_helpers import (
    Operator,
    cli,
    kill_leftovers,
    make_state_root,
    service_pid,
    wait_for,
    write_manifest,
)

pytestmark = pytest.mark.integration

NETWORK = "127.0.28.0/24"  # node1 .11, etcd1 .101, haproxy1 .201
BODY = """  etcd: {members: 1}
  postgres: {instances: 1}
  loadBalancer: {instances: 1}
"""
RUNS = 3


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A free port never handed out before here (the kernel may offer one twice)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


class Op:
    """A `run` with its own status port."""

    def __init__(self, manifest: Path, state: Path) -> None:
        self.port = free_port()
        self.op = Operator(manifest, state, "--listen", f"127.0.0.1:{self.port}")

    @property
    def pid(self) -> int:
        return self.op.proc.pid

    def role(self) -> str | None:
        try:
            st = requests.get(f"http://127.0.0.1:{self.port}/status", timeout=2).json()
        except (requests.RequestException, ValueError):
            return None
        return (st.get("operator") or {}).get("role")

    def kill9(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        self.op.proc.wait()

    def stop(self) -> None:
        self.op.stop()


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Path, Path]]:
    root = make_state_root()
    manifest = write_manifest(root, "standby", NETWORK, BODY)
    state = root / "state"
    try:
        res = cli("apply", "-f", str(manifest), "--state-dir", str(state), "--timeout", "240")
        assert res.returncode == 0, f"apply failed:\n{res.stdout}\n{res.stderr}"
        yield manifest, state
    finally:
        cli("destroy", "-f", str(manifest), "--state-dir", str(state), "--yes", timeout=180)
        kill_leftovers(state)
        shutil.rmtree(root, ignore_errors=True)


def roles(ops: list[Op]) -> list[str] | None:
    got = [op.role() for op in ops]
    return got if all(got) else None  # type: ignore[return-value]


def wait_one_leader(ops: list[Op]) -> tuple[Op, list[Op]]:
    """One leader and the rest standby; on a timeout the operators' last lines say why."""
    try:
        return wait_for("one leader, one standby", lambda: one_leader(ops), 180)
    except AssertionError as exc:
        tails = "\n".join(
            f"--- operator pid {op.pid} ---\n" + "\n".join(op.op.output().splitlines()[-40:])
            for op in ops
        )
        raise AssertionError(f"{exc}\n{tails}") from None


def one_leader(ops: list[Op]) -> tuple[Op, list[Op]] | None:
    got = roles(ops)
    if got is None or sorted(got) != ["leader"] + ["standby"] * (len(ops) - 1):
        return None
    leader = ops[got.index("leader")]
    return leader, [op for op in ops if op is not leader]


def haproxy_running(state: Path, old: int | None) -> int | None:
    pid = service_pid(state, "haproxy1", "haproxy")
    if pid is None or pid == old:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def test_one_leader_standby_takes_over_and_repairs(cluster: tuple[Path, Path]) -> None:
    manifest, state = cluster
    ops = [Op(manifest, state), Op(manifest, state)]
    figures: list[float] = []
    try:
        for _ in range(RUNS):
            leader, standbys = wait_one_leader(ops)
            haproxy = wait_for("HAProxy running", lambda: haproxy_running(state, None), 60)
            # The leader dies; a fault only a leader repairs happens at the same moment.
            leader.kill9()
            killed = time.monotonic()
            os.kill(haproxy, signal.SIGKILL)
            wait_for(
                "the standby to restart HAProxy",
                lambda h=haproxy: haproxy_running(state, h),
                timeout=60,
                step=0.05,
            )
            figures.append(time.monotonic() - killed)
            # (its /status is the last finished cycle: the repairing one may still run)
            wait_for("the new leader's status", lambda s=standbys[0]: s.role() == "leader", 15)
            assert "leadership" in standbys[0].op.output()
            ops = [*standbys, Op(manifest, state)]  # a new standby replaces the dead leader
        report = {
            "ttl": TTL_SECONDS,
            "kill_to_first_repair_s": [round(f, 2) for f in figures],
            "median_s": round(statistics.median(figures), 2),
            "spread_s": round(max(figures) - min(figures), 2),
        }
        print("takeover", json.dumps(report))
        # Generous: the goal (2 x TTL) is reported, not asserted on a shared machine.
        assert all(f < 6 * TTL_SECONDS for f in figures)
    finally:
        for op in ops:
            op.stop()


def test_two_operators_started_together_give_one_leader(cluster: tuple[Path, Path]) -> None:
    manifest, state = cluster
    ops = [Op(manifest, state), Op(manifest, state)]
    try:
        leader, standbys = wait_one_leader(ops)
        for _ in range(10):  # and it stays so
            assert one_leader(ops) is not None
            time.sleep(0.3)
        standby = standbys[0].op.output()
        assert "another operator" not in standby or "exits" not in standby
        assert standbys[0].op.proc.poll() is None  # the standby waits, it does not exit
        leader.stop()  # a clean stop revokes the lease: the standby leads at once
        wait_for("the standby to lead", lambda: standbys[0].role() == "leader", 15, 0.1)
    finally:
        for op in ops:
            op.stop()
