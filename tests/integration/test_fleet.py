"""`run -f DIR`: one operator, two clusters, each in its own loop (issue 15).

Two small clusters (1 etcd, 1 PostgreSQL, 1 HAProxy each) on their own loopback ranges,
both made and kept by one `run -f DIR --state-root ROOT`. With cluster `frozen`'s etcd
stopped (SIGSTOP: its loop's calls hang until their timeouts), cluster `lively` still
repairs a killed HAProxy as fast as before the freeze. Removing a manifest file stops that
cluster's loop and leaves the cluster running.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.cluster_helpers import (
    CLI,
    destroy_cluster,
    make_state_root,
    service_pid,
    status,
    wait_for,
    write_manifest,
)

pytestmark = pytest.mark.integration

BODY = """  etcd: {members: 1}
  postgres: {instances: 1}
  loadBalancer: {instances: 1}
"""
NETS = {"frozen": "127.0.71", "lively": "127.0.72"}  # etcd1 .101, node1 .11, haproxy1 .201
REPAIR_LIMIT = 30.0  # generous: the loop resyncs every 2 s


@dataclass
class Fleet:
    root: Path
    manifests: Path
    state_root: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def state(self, name: str) -> Path:
        return self.state_root / name

    def manifest(self, name: str) -> Path:
        return self.manifests / f"{name}.yaml"

    def converged(self, name: str) -> bool:
        return status(self.manifest(name), self.state(name)).get("phase") == "Converged"

    def loop_stuck(self, name: str, since: float) -> bool:
        """The cluster's own loop no longer converges happily: the status.json it writes
        says etcd is unhealthy, or it has written none for 6 s since `since` (a leader that
        cannot reach etcd loses its lease and only looks, writing nothing)."""
        path = self.state(name) / "status.json"
        written = json.loads(path.read_text())
        etcd = next(c["status"] for c in written["conditions"] if c["type"] == "EtcdHealthy")
        quiet = time.time() - max(path.stat().st_mtime, since)
        return etcd != "True" or quiet > 6

    def output(self) -> str:
        return self.log.read_text()


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    root = make_state_root()
    for name, net in NETS.items():
        write_manifest(root, name, f"{net}.0/24", BODY)
    log = root / "operator.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*CLI, "run", "-f", str(root / "manifests"), "--state-root", str(root / "state")],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).parents[2],
        )
    f = Fleet(root, root / "manifests", root / "state", proc, log)
    try:
        started = time.monotonic()
        for name in NETS:
            wait_for(f"{name} converged", lambda n=name: f.converged(n), timeout=300, step=2)
        print(f"\nboth clusters converged {time.monotonic() - started:.1f} s after run started")
        yield f
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        for name in NETS:
            write_manifest(root, name, f"{NETS[name]}.0/24", BODY)
            destroy_cluster(f.manifest(name), f.state(name))
        shutil.rmtree(root, ignore_errors=True)


def repair_seconds(f: Fleet, name: str) -> float:
    """Kill the cluster's HAProxy (by pid); seconds until a new one runs."""
    state = f.state(name)
    old = service_pid(state, "haproxy1", "haproxy")
    assert old, f"{name}: haproxy has no pid"
    start = time.monotonic()
    os.kill(old, signal.SIGKILL)
    wait_for(
        f"{name}'s haproxy restarted",
        lambda: service_pid(state, "haproxy1", "haproxy") not in (None, old),
        timeout=REPAIR_LIMIT,
        step=0.1,
    )
    return time.monotonic() - start


@contextlib.contextmanager
def frozen_etcd(f: Fleet, name: str) -> Iterator[int]:
    pid = service_pid(f.state(name), "etcd1", "etcd")
    assert pid
    os.kill(pid, signal.SIGSTOP)
    try:
        yield pid
    finally:
        os.kill(pid, signal.SIGCONT)


def test_one_frozen_etcd_does_not_delay_the_other_clusters_repairs(fleet: Fleet) -> None:
    before = repair_seconds(fleet, "lively")
    with frozen_etcd(fleet, "frozen"):
        # The frozen cluster's loop now waits on calls that hang until their timeouts.
        frozen_at = time.time()
        during = repair_seconds(fleet, "lively")
        wait_for(
            "the frozen cluster's loop to be held up by its etcd",
            lambda: fleet.loop_stuck("frozen", frozen_at),
            timeout=90,
        )
        again = repair_seconds(fleet, "lively")
    print(
        f"\nHAProxy repair: {before:.1f} s before the freeze, {during:.1f} / {again:.1f} s during"
    )
    assert max(during, again) < REPAIR_LIMIT
    wait_for("the frozen cluster converged again", lambda: fleet.converged("frozen"), timeout=120)
    wait_for("the lively cluster converged", lambda: fleet.converged("lively"), timeout=60)
    assert fleet.proc.poll() is None


def test_a_removed_manifest_stops_its_loop_and_leaves_the_cluster_running(fleet: Fleet) -> None:
    pids = {
        s: service_pid(fleet.state("lively"), m, s)
        for m, s in (("etcd1", "etcd"), ("node1", "patroni"), ("haproxy1", "haproxy"))
    }
    fleet.manifest("lively").unlink()
    wait_for("the loop stopped", lambda: "cluster loop stopped" in fleet.output(), timeout=30)
    # Its daemons are untouched, and nothing repairs a killed HAProxy any more.
    for (machine, service), pid in zip(
        (("etcd1", "etcd"), ("node1", "patroni"), ("haproxy1", "haproxy")),
        pids.values(),
        strict=True,
    ):
        assert service_pid(fleet.state("lively"), machine, service) == pid
        os.kill(pid, 0)
    os.kill(pids["haproxy"], signal.SIGKILL)
    time.sleep(6)
    assert service_pid(fleet.state("lively"), "haproxy1", "haproxy") == pids["haproxy"]
    # The other cluster is still managed.
    assert repair_seconds(fleet, "frozen") < REPAIR_LIMIT
