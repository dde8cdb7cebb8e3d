"""The `ssh` provider against existing hosts: two nspawn machines stand in for servers the
operator did not make (their keys pinned in a known_hosts file, as a user would give it).
The ssh-provider cluster is applied, used and destroyed; the hosts must survive it, with
only what the operator put there removed."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgha_operator.core import topology
from pgha_operator.core.spec import load
from pgha_operator.shell.providers.nspawn import NspawnProvider

REPO = Path(__file__).parents[2]
CLI = [sys.executable, "-m", "pgha_operator.cli"]

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(
        os.geteuid() != 0 or not shutil.which("systemd-nspawn"),
        reason="lab tests need root and systemd-nspawn (make setup)",
    ),
]

HOSTS_MANIFEST = """apiVersion: pgha/v1
kind: Cluster
metadata: {name: sshhosts}
spec:
  provider: {type: nspawn, network: 10.232.0.0/24}
  etcd: {members: 1, placement: colocated}
  postgres: {instances: 1}
  loadBalancer: {instances: 1}
"""


def ssh_manifest(hosts_state: Path) -> str:
    return f"""apiVersion: pgha/v1
kind: Cluster
metadata: {{name: sshlab}}
spec:
  provider:
    type: ssh
    user: root
    keyFile: {hosts_state}/ssh/id_ed25519
    knownHosts: {hosts_state}/known_hosts
  etcd: {{members: 1, placement: colocated}}
  postgres:
    instances: 1
    machines: [{{name: pg1, address: 10.232.0.11}}]
    hba:
      - {{type: hostssl, database: all, user: all, address: 10.232.0.1/32, method: scram-sha-256}}
  loadBalancer:
    instances: 1
    machines: [{{name: lb1, address: 10.232.0.201}}]
"""


def cli(*args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )
    assert res.returncode == 0, f"{args} exited {res.returncode}:\n{res.stdout}\n{res.stderr}"
    return res


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[Path, NspawnProvider]]:
    """Two running Debian machines with sshd; the operator of the test made them, not the
    ssh provider under test."""
    root = Path(tempfile.mkdtemp(prefix="pgha-sshlab-", dir="/tmp"))
    (root / "hosts.yaml").write_text(HOSTS_MANIFEST)
    cluster = load([str(root / "hosts.yaml")])[0].cluster
    provider = NspawnProvider(cluster, root / "hosts-state")
    try:
        for machine in topology.build(cluster).machines:
            provider.create(machine)
        yield root, provider
    finally:
        for machine in topology.build(cluster).machines:
            with contextlib.suppress(Exception):
                provider.destroy(machine.name)
        shutil.rmtree(root, ignore_errors=True)


def test_ssh_provider_runs_a_cluster_on_existing_hosts_and_leaves_them(
    servers: tuple[Path, NspawnProvider],
) -> None:
    root, hosts = servers
    manifest = root / "ssh.yaml"
    manifest.write_text(ssh_manifest(root / "hosts-state"))
    state = root / "ssh-state"
    args = ["-f", str(manifest), "--state-dir", str(state)]
    assert "create machine pg1" in cli("plan", *args).stdout  # nothing dialled yet

    assert "cluster sshlab converged" in cli("apply", *args, "--timeout", "300").stdout
    dsn = cli("dsn", *args).stdout.strip()
    with psycopg.connect(dsn + " connect_timeout=5", autocommit=True) as conn:
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (1)")
        assert conn.execute("SELECT inet_server_addr()::text").fetchone() == ("10.232.0.11/32",)
    marker = json.loads(
        cli("ssh", *args, "pg1", "--", "cat", "/etc/pgha-operator/sshlab.json").stdout
    )
    # Everything was there already (the image has the packages; its Debian units are
    # masked): the operator records that it installed and masked nothing.
    assert (marker["installed"], marker["masked"]) == ([], [])

    res = cli("destroy", *args, "--yes")
    assert "cluster sshlab destroyed" in res.stdout
    node = hosts.host("node1")  # pg1, as the machine's owner sees it
    assert hosts.running("node1") and hosts.running("haproxy1")  # the hosts stay
    for gone in (
        "/etc/patroni/patroni.yml",
        "/etc/systemd/system/pgha-patroni.service",
        "/etc/systemd/system/pgha-etcd.service",
        "/var/lib/postgresql/15/sshlab",
        "/var/lib/etcd/sshlab",
        "/etc/pgha-operator/sshlab.json",
    ):
        assert not node.run(["test", "-e", gone], check=False).ok, gone
    assert (
        node.run(["systemctl", "is-active", "pgha-patroni"], check=False).stdout.strip() != "active"
    )
    # Not the operator's to undo: the image's own masks and the Patroni venv stay.
    assert (
        node.run(["systemctl", "is-enabled", "postgresql"], check=False).stdout.strip() == "masked"
    )
    assert node.run(["test", "-x", "/opt/pgha-operator/patroni/bin/patroni"], check=False).ok
    lb = hosts.host("haproxy1")
    assert (
        lb.run(["systemctl", "is-active", "pgha-haproxy"], check=False).stdout.strip() != "active"
    )
