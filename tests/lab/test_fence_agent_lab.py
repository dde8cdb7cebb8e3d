"""Fencing through a fence agent, on `ssh` hosts (root only): four nspawn machines stand in
for servers the operator did not make, and tests/fixtures/fence_agent_nspawn.py for their
BMC (the ClusterLabs protocol: options on stdin, action off/on/status). A `run` operator
must fence a primary whose server lost its power: the agent's status says off, a guarded
fence (off again, confirmed by status) releases the leader key long before the lease."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgha_operator.core import topology
from pgha_operator.core.spec import load
from pgha_operator.shell.providers.nspawn import NspawnProvider
from tests.integration.cluster_helpers import wait_for
from tests.lab.test_ssh_provider_lab import CLI, REPO, cli, pytestmark  # noqa: F401

AGENT = REPO / "tests" / "fixtures" / "fence_agent_nspawn.py"
LEASE_TTL = 20.0  # seconds the lease alone would take

HOSTS_MANIFEST = """apiVersion: pgha/v1
kind: Cluster
metadata: {name: agenthosts}
spec:
  provider: {type: nspawn, network: 10.233.0.0/24}
  etcd: {members: 3, placement: colocated}
  postgres: {instances: 3}
  loadBalancer: {instances: 1}
"""


def ssh_manifest(root: Path) -> str:
    hosts_state = root / "hosts-state"
    agent = {
        "command": sys.executable,
        "args": [str(AGENT)],
        "options": {"hosts": str(root / "hosts.yaml"), "state": str(hosts_state)},
        "machines": {f"pg{i}": {"plug": f"node{i}"} for i in (1, 2, 3)},
        "timeoutSeconds": 60,
    }
    return f"""apiVersion: pgha/v1
kind: Cluster
metadata: {{name: agentlab}}
spec:
  provider:
    type: ssh
    user: root
    keyFile: {hosts_state}/ssh/id_ed25519
    knownHosts: {hosts_state}/known_hosts
  failover: {{fenceAgent: {json.dumps(agent)}}}
  etcd: {{members: 3, placement: colocated}}
  postgres:
    instances: 3
    machines:
      - {{name: pg1, address: 10.233.0.11}}
      - {{name: pg2, address: 10.233.0.12}}
      - {{name: pg3, address: 10.233.0.13}}
    hba:
      - {{type: hostssl, database: all, user: all, address: 10.233.0.1/32, method: scram-sha-256}}
  loadBalancer:
    instances: 1
    machines: [{{name: lb1, address: 10.233.0.201}}]
"""


@pytest.fixture(scope="module")
def servers() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="pgha-agentlab-", dir="/tmp"))
    (root / "hosts.yaml").write_text(HOSTS_MANIFEST)
    (root / "agentlab.yaml").write_text(ssh_manifest(root))
    cluster = load([str(root / "hosts.yaml")])[0].cluster
    provider = NspawnProvider(cluster, root / "hosts-state")
    try:
        for machine in topology.build(cluster).machines:
            provider.create(machine)
        yield root
    finally:
        with_cluster = ("-f", str(root / "agentlab.yaml"), "--state-dir", str(root / "state"))
        subprocess.run([*CLI, "destroy", *with_cluster, "--yes"], cwd=REPO, check=False)
        for machine in topology.build(cluster).machines:
            with contextlib.suppress(Exception):  # sweep up what is left
                provider.destroy(machine.name)
        shutil.rmtree(root, ignore_errors=True)


def primary(root: Path) -> str | None:
    """The member `status` reports as primary (exit status ignored: degraded is fine)."""
    files = ("-f", str(root / "agentlab.yaml"), "--state-dir", str(root / "state"))
    res = subprocess.run(
        [*CLI, "status", *files, "--json"], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    try:
        members = json.loads(res.stdout)["postgres"]["members"]
    except (ValueError, KeyError, TypeError):
        return None
    leaders = [m["name"] for m in members if m["role"] == "primary"]
    return leaders[0] if len(leaders) == 1 else None


def agent(root: Path, plug: str, action: str) -> int:
    stdin = (
        f"hosts={root / 'hosts.yaml'}\nstate={root / 'hosts-state'}\nplug={plug}\naction={action}\n"
    )
    return subprocess.run(
        [sys.executable, str(AGENT)], input=stdin, text=True, timeout=120
    ).returncode


def test_a_powered_off_primary_is_fenced_through_the_agent(servers: Path) -> None:
    files = ("-f", str(servers / "agentlab.yaml"), "--state-dir", str(servers / "state"))
    cli("apply", *files, "--timeout", "600", timeout=900)
    old = wait_for("one primary", lambda: primary(servers), 60)
    run = subprocess.Popen(
        [*CLI, "run", *files],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(5)  # the operator leads and watches the primary
        plug = f"node{old[-1]}"
        cut = time.monotonic()
        assert agent(servers, plug, "off") == 0  # the server loses its power
        new = wait_for("a new primary", lambda: (p := primary(servers)) and p != old and p, 60)
        took = time.monotonic() - cut
        assert new != old and took < LEASE_TTL, took
        assert agent(servers, plug, "status") == 2
    finally:
        run.send_signal(signal.SIGTERM)
        out, _ = run.communicate(timeout=60)
    assert f"fencing {old}" in out and "machine powered off, leader key released" in out, out[
        -3000:
    ]
    assert agent(servers, plug, "on") == 0  # its BMC powers it on again
    cli("apply", *files, "--timeout", "300", timeout=600)
    assert primary(servers) == new
