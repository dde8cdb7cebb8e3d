"""The `ssh` provider against existing hosts: two nspawn machines stand in for servers the
operator did not make (their keys pinned in a known_hosts file, as a user would give it),
already running Debian's own PostgreSQL cluster 15/main and Debian's HAProxy. The
ssh-provider cluster is applied beside them, used, refused to an operator of another
identity, and destroyed; the hosts and their own daemons must survive it untouched (same
PIDs, same files), with only what the operator put there removed."""

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


# Debian's HAProxy gets a listener of its own (its default config has none), on a port the
# cluster does not use.
DEBIAN_HAPROXY_LISTENER = """
listen debian_own_stats
    bind *:8404
    stats enable
    stats uri /
"""
DEBIAN_FILES = {
    "node1": ("/etc/postgresql/15/main/postgresql.conf", "/etc/postgresql/15/main/pg_hba.conf"),
    "haproxy1": ("/etc/haproxy/haproxy.cfg",),
}
DEBIAN_UNITS = {"node1": "postgresql@15-main.service", "haproxy1": "haproxy.service"}


def start_debian_daemons(hosts: NspawnProvider) -> None:
    """What a host had before the operator came: Debian's cluster main and Debian's HAProxy,
    running from Debian's own units (the lab image masks haproxy.service: unmask it here)."""
    node = hosts.host("node1")
    node.run(["pg_createcluster", "15", "main"], timeout=120)
    node.run(["systemctl", "start", "postgresql@15-main.service"], timeout=120)
    lb = hosts.host("haproxy1")
    lb.run(["rm", "-f", "/etc/systemd/system/haproxy.service"])
    lb.run(["systemctl", "daemon-reload"])
    lb.run(["sh", "-c", f"cat >> /etc/haproxy/haproxy.cfg <<'EOF'{DEBIAN_HAPROXY_LISTENER}EOF"])
    lb.run(["systemctl", "start", "haproxy.service"], timeout=60)


def debian_state(hosts: NspawnProvider) -> dict[str, tuple[str, str, str]]:
    """machine -> (its Debian unit's state, main PID, sha256 of its files)."""
    found = {}
    for machine, unit in DEBIAN_UNITS.items():
        host = hosts.host(machine)
        show = ["systemctl", "show", "-p", "ActiveState", "-p", "MainPID", unit]
        props = dict(line.split("=", 1) for line in host.run(show).stdout.split())
        sums = host.run(["sha256sum", *DEBIAN_FILES[machine]]).stdout
        found[machine] = (props["ActiveState"], props["MainPID"], sums)
    return found


def cli_fails(*args: str, timeout: float = 200) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert res.returncode != 0, f"{args} succeeded:\n{res.stdout}"
    return res


def test_ssh_provider_installs_beside_debians_daemons_and_leaves_them(
    servers: tuple[Path, NspawnProvider],
) -> None:
    root, hosts = servers
    start_debian_daemons(hosts)
    before = debian_state(hosts)
    assert {state for state, _, _ in before.values()} == {"active"}
    manifest = root / "ssh.yaml"
    manifest.write_text(ssh_manifest(root / "hosts-state"))
    state = root / "ssh-state"
    args = ["-f", str(manifest), "--state-dir", str(state)]
    assert "create machine pg1" in cli("plan", *args).stdout  # nothing dialled yet

    # Debian's main listens on localhost:5432; the cluster's PostgreSQL on 10.232.0.11:5432.
    assert "cluster sshlab converged" in cli("apply", *args, "--timeout", "300").stdout
    dsn = cli("dsn", *args).stdout.strip()
    with psycopg.connect(dsn + " connect_timeout=5", autocommit=True) as conn:
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (1)")
        assert conn.execute("SELECT inet_server_addr()::text").fetchone() == ("10.232.0.11/32",)
    owner = json.loads(cli("ssh", *args, "pg1", "--", "cat", "/etc/pgha/sshlab/owner.json").stdout)
    # Everything was there already (the image has the packages): nothing installed or
    # disabled, and the host records this cluster's identity.
    cluster_id = (state / "cluster-id").read_text().strip()
    assert owner == {"cluster": "sshlab", "cluster_id": cluster_id, "installed": [],
                     "disabled": [], "patroni_venv": None}  # fmt: skip
    assert debian_state(hosts) == before  # running, same PIDs, same files

    # Another operator (its own state dir, so another identity) is refused, with the reason,
    # before it changes anything: the cluster keeps its passwords and keeps serving.
    other = ["-f", str(manifest), "--state-dir", str(root / "other-state")]
    refused = cli_fails("apply", *other, "--timeout", "60")
    assert "belongs to cluster sshlab of identity " + cluster_id in refused.stdout + refused.stderr
    with psycopg.connect(dsn + " connect_timeout=5", autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (1,)

    res = cli("destroy", *args, "--yes")
    assert "cluster sshlab destroyed" in res.stdout
    assert "left on pg1: the host's own services, untouched and running: " in res.stdout
    assert "postgresql@15-main.service" in res.stdout
    assert debian_state(hosts) == before
    node = hosts.host("node1")  # pg1, as the machine's owner sees it
    assert hosts.running("node1") and hosts.running("haproxy1")  # the hosts stay
    for gone in (
        "/etc/pgha/sshlab",
        "/var/lib/pgha/sshlab",
        "/run/pgha/sshlab",
        "/etc/systemd/system/pgha-sshlab-patroni.service",
        "/etc/systemd/system/pgha-sshlab-etcd.service",
    ):
        assert not node.run(["test", "-e", gone], check=False).ok, gone
    active = ["systemctl", "is-active", "pgha-sshlab-patroni", "pgha-sshlab-etcd"]
    assert "active" not in node.run(active, check=False).stdout.split()
    # Not the operator's to undo: the image's own masks, Debian's cluster, the Patroni venv
    # it did not make.
    assert (
        node.run(["systemctl", "is-enabled", "postgresql"], check=False).stdout.strip() == "masked"
    )
    assert node.run(["test", "-d", "/var/lib/postgresql/15/main"], check=False).ok
    assert node.run(["test", "-x", "/opt/pgha-operator/patroni/bin/patroni"], check=False).ok
    lb = hosts.host("haproxy1")
    assert not lb.run(["test", "-e", "/etc/pgha/sshlab"], check=False).ok
    assert (
        lb.run(["systemctl", "is-active", "pgha-sshlab-haproxy"], check=False).stdout.strip()
        != "active"
    )
