"""Fenced failover on the local provider: the running operator powers a dead or frozen
primary's machine off and releases its leader key; it refuses whenever a guard fails.

The cluster runs `synchronous: on`: only then is "no acknowledged row lost" a guarantee
(asynchronous replication can lose the last commits of a crashed primary, fenced or not).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import psycopg
import pytest

from pgha_operator.shell.controller import Controller
from pgha_operator.shell.fencer import Fencer
from pgha_operator.shell.hosts.local import LocalHost
from pgha_operator.shell.state import StateDir
from tests.integration.cluster_helpers import (
    Operator,
    Writer,
    cli,
    dsn,
    kill_leftovers,
    make_state_root,
    postmaster_pid,
    service_pid,
    status,
    wait_for,
    write_manifest,
)

pytestmark = pytest.mark.integration

NET = "127.0.23"


def body(fencing: str = "auto") -> str:
    return f"""  etcd: {{members: 3}}
  postgres: {{instances: 3, synchronous: "on"}}
  loadBalancer: {{instances: 1}}
  failover: {{fencing: "{fencing}"}}
"""


@dataclass
class Fenced:
    root: Path
    manifest: Path
    state: Path

    def args(self) -> list[str]:
        return ["-f", str(self.manifest), "--state-dir", str(self.state)]

    def members(self) -> dict[str, dict]:
        return {m["name"]: m for m in status(self.manifest, self.state)["postgres"]["members"]}

    def primary(self) -> str:
        return next(n for n, m in self.members().items() if m["role"] == "primary")

    def converged(self) -> bool:
        return status(self.manifest, self.state)["phase"] == "Converged"

    def host(self, machine: str) -> LocalHost:
        root = str(self.state / "machines" / machine)
        return LocalHost(machine, root, tag=root)


class PrimaryWatch:
    """Asks every node directly, in parallel, whether it accepts writes; records overlaps."""

    def __init__(self, c: Fenced) -> None:
        base = dsn(c.manifest, c.state)
        self.nodes = {
            f"node{i}": base.replace(f"host={NET}.201 port=5000", f"host={NET}.1{i} port=5432")
            for i in (1, 2, 3)
        }
        self.writable: dict[str, bool] = dict.fromkeys(self.nodes, False)
        self.max_writable = 0
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._poll, args=(n,), daemon=True) for n in self.nodes
        ]

    def __enter__(self) -> PrimaryWatch:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)

    def _poll(self, node: str) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.nodes[node], autocommit=True) as conn:
                    ok = conn.execute("SELECT NOT pg_is_in_recovery()").fetchone()
                    self.writable[node] = bool(ok and ok[0])
            except psycopg.Error:
                self.writable[node] = False
            self.max_writable = max(self.max_writable, sum(self.writable.values()))
            time.sleep(0.1)


def freeze(host: LocalHost) -> set[int]:
    """SIGSTOP every process of a machine, including any forked meanwhile: a hung VM."""
    stopped: set[int] = set()
    for _ in range(20):
        fresh = set(host.processes()) - stopped
        if not fresh:
            return stopped
        for pid in fresh:
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                continue
            stopped.add(pid)
        time.sleep(0.05)
    return stopped


@pytest.fixture(scope="module")
def fenced() -> Iterator[Fenced]:
    root = make_state_root()
    manifest = write_manifest(root, "fenced", f"{NET}.0/24", body())
    c = Fenced(root, manifest, root / "state")
    try:
        res = cli("apply", *c.args(), "--timeout", "240")
        assert res.returncode == 0, res.stderr
        yield c
    finally:
        cli("destroy", *c.args(), "--yes", timeout=180)
        kill_leftovers(c.state)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def operator(fenced: Fenced) -> Iterator[Operator]:
    wait_for("converged", fenced.converged, timeout=120)
    op = Operator(fenced.manifest, fenced.state)
    try:
        time.sleep(3)  # the operator's first cycle names the leader it probes
        yield op
    finally:
        op.stop()


def test_crashed_primary_is_fenced_and_replaced_at_once(fenced: Fenced, operator: Operator) -> None:
    old = fenced.primary()
    with Writer(dsn(fenced.manifest, fenced.state)) as writer, PrimaryWatch(fenced) as watch:
        since = time.monotonic()
        os.kill(service_pid(fenced.state, old, "patroni") or 0, signal.SIGKILL)
        os.kill(postmaster_pid(fenced.state, old) or 0, signal.SIGKILL)
        wait_for("a new primary", lambda: fenced.primary() != old, timeout=60)
        wait_for("writes after the crash", lambda: writer.ack_times[-1] > since + 1, timeout=60)
        gap = writer.longest_gap(since)
    assert (
        f"decision='fencing {old}:" in operator.output()
        and "leader key released" in operator.output()
    )
    # Not inferred from three failed probes: the provider's pidfds reported the death.
    assert "reported dead by the provider" in operator.output()
    record = StateDir(fenced.state).fences()[-1]
    assert record["machine"] == old and record["seenBy"] == "event"
    assert writer.lost() == []
    assert watch.max_writable <= 1, "two nodes accepted writes at once"
    wait_for("the old primary back as a replica", fenced.converged, timeout=120)
    assert fenced.members()[old]["role"] in ("replica", "sync_standby")
    print(f"fenced crash: write gap {gap:.2f}s, {writer.failed} failed attempts")


def test_frozen_primary_is_fenced_and_never_writes_again(
    fenced: Fenced, operator: Operator
) -> None:
    old = fenced.primary()
    host = fenced.host(old)
    with Writer(dsn(fenced.manifest, fenced.state)) as writer, PrimaryWatch(fenced) as watch:
        pids = freeze(host)
        try:
            wait_for("a new primary", lambda: fenced.primary() != old, timeout=60)
        finally:
            for pid in pids:  # a hung VM that wakes up: its processes must be gone by now
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
        time.sleep(2)
    assert (
        f"decision='fencing {old}:" in operator.output()
        and "reported frozen by the provider" in operator.output()
    )
    assert writer.lost() == []
    assert watch.max_writable <= 1, "two nodes accepted writes at once"
    assert not any(p in host.processes() for p in pids)
    wait_for("the old primary back as a replica", fenced.converged, timeout=120)


def test_patroni_crash_alone_restarts_patroni_without_failover(
    fenced: Fenced, operator: Operator
) -> None:
    old = fenced.primary()
    os.kill(service_pid(fenced.state, old, "patroni") or 0, signal.SIGKILL)
    wait_for(
        "patroni restarted",
        lambda: service_pid(fenced.state, old, "patroni") is not None,
        timeout=30,
    )
    wait_for("converged", fenced.converged, timeout=120)
    assert fenced.primary() == old
    assert f"decision='fencing {old}:" not in operator.output()


def test_an_operator_cut_off_fences_nothing(fenced: Fenced) -> None:
    """Every probe fails (a REST port nobody listens on), but the cluster is healthy."""
    ctl = Controller([str(fenced.manifest)], state_dir=fenced.state)
    desired, observed = ctl.observe()
    fencer = Fencer(desired, ctl.provider, ctl.clients)
    fencer.update(desired, observed)
    leader = fencer.leader
    blind = replace(desired, topology=replace(desired.topology, rest_api_port=1))
    fencer.desired = blind
    decisions = [fencer.probe() for _ in range(3)]
    assert decisions[-1] is not None and not decisions[-1].fence
    assert "machines answer" in decisions[-1].reason or "running" in decisions[-1].reason
    assert fenced.primary() == leader and fenced.host(leader or "").processes()


def test_fencing_off_waits_for_the_lease(fenced: Fenced) -> None:
    write_manifest(fenced.root, "fenced", f"{NET}.0/24", body("off"))
    op = Operator(fenced.manifest, fenced.state)
    try:
        time.sleep(3)
        old = fenced.primary()
        pids = freeze(fenced.host(old))
        try:
            wait_for("a new primary after the lease", lambda: fenced.primary() != old, timeout=90)
        finally:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
        assert "fencing is off" in op.output()
        wait_for("the old primary back as a replica", fenced.converged, timeout=120)
    finally:
        op.stop()
        write_manifest(fenced.root, "fenced", f"{NET}.0/24", body())
