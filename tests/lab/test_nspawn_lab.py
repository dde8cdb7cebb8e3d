"""The SSH + systemd path end to end, on systemd-nspawn machines (root only).

manifests/nspawn.yaml as shipped: 3 PostgreSQL machines (etcd beside them) and 2 HAProxy
machines behind a VIP (keepalived), each a booted Debian 12 with systemd and sshd in its own network namespace. The
tests run in order against one cluster; the module's fixture destroys it (and sweeps up
anything the provider made) even when a test fails. The rootfs is built once when absent
and cached in /var/cache/pgha-operator/rootfs (outside the repository).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from pgha_operator.core.facts.types import MachineState
from pgha_operator.core.render.haproxy import STATS_USER
from pgha_operator.core.spec import load
from pgha_operator.shell.providers import make_provider
from pgha_operator.shell.providers.nspawn import NspawnProvider
from pgha_operator.shell.state import StateDir, pki
from tests.integration.cluster_helpers import wait_for
from tests.lab.vip_helpers import BALANCERS, holder_changes, holders, write_through_vip

REPO = Path(__file__).parents[2]
MANIFEST = REPO / "manifests" / "nspawn.yaml"
CLI = [sys.executable, "-m", "pgha_operator.cli"]
APPLY_TIMEOUT = 600  # the first apply may build the rootfs (~1-2 min) before anything else

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(
        os.geteuid() != 0 or not shutil.which("systemd-nspawn"),
        reason="lab tests need root and systemd-nspawn (make setup)",
    ),
]


@dataclass
class Lab:
    state: Path
    provider: NspawnProvider
    manifest: Path = MANIFEST

    def cli(
        self, *args: str, timeout: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            [*CLI, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
        )
        if check and res.returncode != 0:
            raise AssertionError(
                f"pgha-operator {' '.join(args)} exited {res.returncode}:\n{res.stdout}\n{res.stderr}"
            )
        return res

    def apply(self, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return self.cli(
            "apply",
            "-f",
            str(self.manifest),
            "--state-dir",
            str(self.state),
            "--timeout",
            str(timeout),
            timeout=timeout + 120,
        )

    def ssh(
        self, machine: str, *command: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.cli(
            "ssh",
            "-f",
            str(self.manifest),
            "--state-dir",
            str(self.state),
            machine,
            "--",
            *command,
            timeout=120,
            check=check,
        )

    def status(self) -> dict[str, Any]:
        res = self.cli(
            "status",
            "-f",
            str(self.manifest),
            "--state-dir",
            str(self.state),
            "--json",
            check=False,
        )
        return json.loads(res.stdout)

    def dsn(self, role: str) -> str:
        res = self.cli(
            "dsn", "-f", str(self.manifest), "--state-dir", str(self.state), "--role", role
        )
        return res.stdout.strip()

    @property
    def ca(self) -> str:
        """The cluster's CA: Patroni's REST API speaks https only."""
        return pki.client_files(self.state).ca

    def primary(self) -> str | None:
        """The node whose Patroni answers GET /primary with 200 (asked directly)."""
        topo = self.provider.topology
        found = []
        for name in topo.postgres:
            with contextlib.suppress(requests.RequestException):
                url = f"{topo.rest_api_url(name)}/primary"
                if requests.get(url, timeout=1, verify=self.ca).status_code == 200:
                    found.append(name)
        return found[0] if len(found) == 1 else None

    def members(self) -> dict[str, dict[str, Any]]:
        return {m["name"]: m for m in self.status()["postgres"]["members"]}

    def streaming_replica(self, name: str) -> bool:
        m = self.members()[name]
        return m["role"] == "replica" and m["state"] == "streaming"


def leftovers(provider: NspawnProvider, state: Path) -> list[str]:
    """Everything of this cluster that could outlive it: namespaces, links, mounts, nspawn."""
    net = provider.net
    found = [f"netns {n}" for n in os.listdir("/run/netns")] if os.path.isdir("/run/netns") else []
    ours = {net.switch_ns, *(net.machine_ns(m.name) for m in provider.topology.machines)}
    found = [f for f in found if f.split(" ", 1)[1] in ours]
    if os.path.exists(f"/sys/class/net/{net.uplink}"):
        found.append(f"link {net.uplink}")
    with open("/proc/self/mountinfo") as f:
        found += [f"mount {line.split()[4]}" for line in f if str(state) in line.split()[4]]
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        zombie = stat[stat.rindex(")") + 2] == "Z"
        if (
            not zombie
            and cmdline[0].endswith(b"systemd-nspawn")
            and str(state).encode() in b" ".join(cmdline)
        ):
            found.append(f"process {entry} {b' '.join(cmdline).decode()[:80]}")
    return found


@contextlib.contextmanager
def lab_for(manifest: Path) -> Iterator[Lab]:
    """A lab cluster of `manifest`, destroyed (and swept up) at the end even after a failure."""
    state = Path(tempfile.mkdtemp(prefix="pgha-lab-", dir="/tmp"))
    cluster = load([str(manifest)])[0].cluster
    provider = make_provider(cluster, state)
    assert isinstance(provider, NspawnProvider)
    lab = Lab(state, provider, manifest)
    try:
        yield lab
    finally:
        lab.cli("destroy", "-f", str(manifest), "--state-dir", str(state), "--yes", check=False)
        # Safety net for a destroy that failed: the provider sweeps up what it made.
        for m in provider.topology.machines:
            with contextlib.suppress(Exception):
                provider.destroy(m.name)
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with lab_for(MANIFEST) as lab:
        yield lab


def test_apply_then_write_through_5000_and_read_through_5001(lab: Lab) -> None:
    res = lab.apply(APPLY_TIMEOUT)
    assert "cluster lab converged" in res.stdout
    primary_dsn = lab.dsn("primary") + " connect_timeout=5"
    replica_dsn = lab.dsn("replicas") + " connect_timeout=5"
    assert "host=10.231.0.250 port=5000" in primary_dsn  # the VIP in front of haproxy1-2
    with psycopg.connect(primary_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS lab_rows (id int PRIMARY KEY, note text)")
        conn.execute("INSERT INTO lab_rows VALUES (1, 'through :5000')")
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)

    def replica_sees_row() -> bool:
        with psycopg.connect(replica_dsn, autocommit=True) as conn:
            in_recovery = conn.execute("SELECT pg_is_in_recovery()").fetchone()
            row = conn.execute("SELECT note FROM lab_rows WHERE id = 1").fetchone()
            return in_recovery == (True,) and row == ("through :5000",)

    wait_for("the row on a replica through :5001", replica_sees_row, 60)


def test_services_are_active_on_the_right_machines(lab: Lab) -> None:
    for node in ("node1", "node2", "node3"):
        out = lab.ssh(
            node,
            "systemctl",
            "is-active",
            "pgha-lab-patroni",
            "pgha-lab-etcd",
            "pgha-lab-haproxy",
            check=False,
        )
        assert out.stdout.split() == ["active", "active", "inactive"], (node, out.stdout)
    out = lab.ssh(
        "haproxy1",
        "systemctl",
        "is-active",
        "pgha-lab-haproxy",
        "pgha-lab-patroni",
        "pgha-lab-etcd",
        check=False,
    )
    assert out.stdout.split() == ["active", "inactive", "inactive"]
    # Enabled, so a machine that reboots brings its services back on its own.
    assert (
        lab.ssh("node1", "systemctl", "is-enabled", "pgha-lab-patroni").stdout.strip() == "enabled"
    )
    # The provider's own view of the machines (what fencing asks).
    assert lab.provider.machine_state("node1") == MachineState.RUNNING
    assert lab.provider.machine_state("haproxy1") == MachineState.PATRONI_DOWN  # none there
    # Debian's own units for the same daemons are masked.
    out = lab.ssh("node1", "systemctl", "is-enabled", "etcd", "postgresql", "haproxy", check=False)
    assert out.stdout.split() == ["masked", "masked", "masked"]


def _etcdctl(lab: Lab, endpoint: str, *tls: str) -> subprocess.CompletedProcess[str]:
    argv = ["etcdctl", f"--endpoints={endpoint}", "--dial-timeout=2s", "--command-timeout=3s"]
    return subprocess.run(
        [*argv, *tls, "member", "list"], capture_output=True, text=True, timeout=30, check=False
    )


def test_etcd_runs_as_etcd_hardened_and_serves_only_tls_clients(lab: Lab) -> None:
    for node in ("node1", "node2", "node3"):
        pid = _main_pid(lab, node, "pgha-lab-etcd")
        uid = lab.ssh(node, "awk", "/^Uid:/ {print $2}", f"/proc/{pid}/status").stdout.strip()
        assert uid == lab.ssh(node, "id", "-u", "etcd").stdout.strip() and uid != "0"
        show = ["systemctl", "show", "pgha-lab-etcd", "-p", "User", "-p", "NoNewPrivileges"]
        show += ["-p", "ProtectSystem", "-p", "PrivateTmp", "-p", "ProtectHome"]
        show += ["-p", "StateDirectory"]
        props = dict(line.split("=", 1) for line in lab.ssh(node, *show).stdout.splitlines())
        assert props == {
            "User": "etcd",
            "NoNewPrivileges": "yes",
            "ProtectSystem": "strict",
            "PrivateTmp": "yes",
            "ProtectHome": "yes",
            "StateDirectory": "pgha/lab/etcd",
        }
        data = lab.ssh(node, "stat", "-c", "%U %a", "/var/lib/pgha/lab/etcd").stdout.split()
        assert data == ["etcd", "700"]
    # Its client URL is https and asks for the operator's certificate.
    tls = lab.state / "tls"
    url = "https://10.231.0.11:2379"
    ok = _etcdctl(lab, url, f"--cacert={tls / 'ca.crt'}", f"--cert={tls / 'operator.crt'}",
                  f"--key={tls / 'operator.key'}")  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    listed = ok.stdout.splitlines()
    assert len(listed) == 3 and all(", https://10.231.0.1" in line for line in listed), listed
    assert _etcdctl(lab, url, f"--cacert={tls / 'ca.crt'}").returncode != 0
    assert _etcdctl(lab, "http://10.231.0.11:2379").returncode != 0


def haproxy_users(lab: Lab) -> list[str]:
    """The user of every HAProxy process on haproxy1 (the master and its workers)."""
    out = lab.ssh("haproxy1", "ps", "-o", "user=", "-C", "haproxy", check=False).stdout
    return out.split()


def test_haproxy_runs_as_haproxy_under_a_hardened_unit(lab: Lab) -> None:
    users = haproxy_users(lab)
    assert len(users) >= 2 and set(users) == {"haproxy"}, users  # master + worker, no root
    props = ["User", "NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp"]
    show = lab.ssh("haproxy1", "systemctl", "show", "pgha-lab-haproxy", *(f"-p{p}" for p in props))
    assert dict(line.split("=", 1) for line in show.stdout.split()) == {
        "User": "haproxy",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
    }
    # The stats page asks for the generated password.
    stats = "http://10.231.0.201:7000/;csv"
    assert requests.get(stats, timeout=5).status_code == 401
    secrets = StateDir(lab.state).secrets()
    assert secrets is not None
    page = requests.get(stats, auth=(STATS_USER, secrets.stats_password), timeout=5)
    assert page.status_code == 200 and "primary,BACKEND" in page.text
    # Patroni's REST API: https, and POST /switchover without the password is refused.
    topo = lab.provider.topology
    url = f"{topo.rest_api_url('node1')}/switchover"
    assert requests.post(url, json={}, timeout=5, verify=lab.ca).status_code == 401


def _main_pid(lab: Lab, machine: str, unit: str) -> str:
    return lab.ssh(machine, "systemctl", "show", "-p", "MainPID", "--value", unit).stdout.strip()


def test_hand_edited_haproxy_cfg_is_restored_and_reloaded(lab: Lab) -> None:
    cfg = "/etc/pgha/lab/haproxy.cfg"
    rendered = lab.ssh("haproxy1", "cat", cfg).stdout
    pid = _main_pid(lab, "haproxy1", "pgha-lab-haproxy")
    reloads = lab.ssh(
        "haproxy1", "sh", "-c", "journalctl -u pgha-lab-haproxy -o cat | grep -c Reloaded || true"
    ).stdout
    lab.ssh("haproxy1", "sh", "-c", f"echo '# edited by hand' >> {cfg}")
    assert lab.ssh("haproxy1", "cat", cfg).stdout != rendered
    res = lab.apply()
    # written with the reload-pending mark, reloaded, then written as rendered
    assert "write haproxy1:/etc/pgha/lab/haproxy.cfg (changed, reload pending)" in res.stdout
    assert "reload haproxy on haproxy1" in res.stdout
    assert lab.ssh("haproxy1", "cat", cfg).stdout == rendered
    assert _main_pid(lab, "haproxy1", "pgha-lab-haproxy") == pid  # reloaded, not restarted
    assert set(haproxy_users(lab)) == {"haproxy"}  # the re-executed master too
    after = lab.ssh(
        "haproxy1", "sh", "-c", "journalctl -u pgha-lab-haproxy -o cat | grep -c Reloaded || true"
    ).stdout
    assert int(after) == int(reloads or 0) + 1
    with psycopg.connect(lab.dsn("primary") + " connect_timeout=5") as conn:
        assert conn.execute("SELECT count(*) FROM lab_rows").fetchone() == (1,)


def test_changed_unit_is_reloaded_into_systemd_and_restarted(lab: Lab) -> None:
    unit = "/etc/systemd/system/pgha-lab-haproxy.service"
    rendered = lab.ssh("haproxy1", "cat", unit).stdout
    pid = _main_pid(lab, "haproxy1", "pgha-lab-haproxy")
    lab.ssh("haproxy1", "sed", "-i", "s/^TimeoutStopSec=.*/TimeoutStopSec=7/", unit)
    show = ["systemctl", "show", "-p", "NeedDaemonReload", "--value", "pgha-lab-haproxy"]
    assert lab.ssh("haproxy1", *show).stdout.strip() == "yes"
    res = lab.apply()
    assert "restart haproxy on haproxy1" in res.stdout
    assert lab.ssh("haproxy1", "cat", unit).stdout == rendered
    assert lab.ssh("haproxy1", *show).stdout.strip() == "no"
    assert _main_pid(lab, "haproxy1", "pgha-lab-haproxy") != pid


def test_stopped_patroni_on_a_replica_is_started_again(lab: Lab) -> None:
    primary = wait_for("one primary", lab.primary, 60)
    replica = next(n for n in ("node1", "node2", "node3") if n != primary)
    lab.ssh(replica, "systemctl", "stop", "pgha-lab-patroni")
    assert (
        lab.ssh(replica, "systemctl", "is-active", "pgha-lab-patroni", check=False).stdout.strip()
        == "inactive"
    )
    assert lab.provider.machine_state(replica) == MachineState.PATRONI_DOWN
    res = lab.apply()
    assert f"start patroni on {replica}" in res.stdout
    assert lab.ssh(replica, "systemctl", "is-active", "pgha-lab-patroni").stdout.strip() == "active"
    wait_for(
        f"{replica} streaming again",
        lambda: (
            lab.members()[replica]["state"] in ("streaming", "running")
            and lab.members()[replica]["role"] == "replica"
        ),
        90,
    )


def test_frozen_machine_is_seen_frozen_then_running(lab: Lab) -> None:
    primary = wait_for("one primary", lab.primary, 60)
    replica = next(n for n in ("node1", "node2", "node3") if n != primary)
    lab.provider.freeze(replica)
    try:
        assert lab.provider.machine_state(replica) == MachineState.FROZEN
    finally:
        lab.provider.thaw(replica)
    wait_for(
        f"{replica} running again",
        lambda: lab.provider.machine_state(replica) == MachineState.RUNNING,
        30,
    )


def test_partitioned_primary_is_replaced_and_rejoins_when_reconnected(lab: Lab) -> None:
    old = wait_for("one primary", lab.primary, 60)
    lab.provider.isolate(old)  # its only link goes down; the machine keeps running
    try:
        new = wait_for("a new primary", lambda: (p := lab.primary()) and p != old and p, 120)
        assert lab.provider.running(old)
        assert lab.provider.machine_state(old) == MachineState.RUNNING  # cut off, not dead
        with psycopg.connect(lab.dsn("primary") + " connect_timeout=5", autocommit=True) as conn:
            conn.execute("INSERT INTO lab_rows VALUES (3, 'during the partition')")
        res = lab.cli(
            "apply",
            "-f",
            str(lab.manifest),
            "--state-dir",
            str(lab.state),
            "--timeout",
            "10",
            check=False,
        )
        assert res.returncode == 1
        assert "cut off from the network" in res.stdout + res.stderr
    finally:
        lab.provider.reconnect(old)
    lab.apply()
    wait_for(
        f"{old} back as a streaming replica",
        lambda: lab.streaming_replica(old),
        120,
    )
    assert lab.primary() == new


def test_hard_stopped_primary_fails_over_and_rejoins_as_replica(lab: Lab) -> None:
    old = wait_for("one primary", lab.primary, 60)
    lab.provider.power_off(old)  # a power cut: the container's PID 1 is SIGKILLed
    assert not lab.provider.running(old)
    new = wait_for("a new primary", lambda: (p := lab.primary()) and p != old and p, 120)
    with psycopg.connect(lab.dsn("primary") + " connect_timeout=5", autocommit=True) as conn:
        conn.execute("INSERT INTO lab_rows VALUES (2, 'after the hard stop')")
    res = lab.apply()  # the operator boots the machine again; Patroni rejoins it
    assert f"create machine {old}" in res.stdout
    assert lab.provider.running(old)
    wait_for(
        f"{old} back as a streaming replica",
        lambda: lab.streaming_replica(old),
        120,
    )
    assert lab.primary() == new
    with psycopg.connect(lab.dsn("primary") + " connect_timeout=5") as conn:
        ids = conn.execute("SELECT id FROM lab_rows WHERE id < 10 ORDER BY id").fetchall()
        assert ids == [(1,), (2,), (3,)]


def test_the_vip_is_held_by_exactly_one_load_balancer(lab: Lab) -> None:
    for m in BALANCERS:
        active = lab.ssh(m, "systemctl", "is-active", "pgha-lab-keepalived").stdout.strip()
        assert active == "active", m
    assert len(wait_for("one VIP holder", lambda: len(holders(lab)) == 1 and holders(lab), 30)) == 1
    write_through_vip(lab, 10, "through the VIP")
    assert holder_changes(lab, 3) == [tuple(holders(lab))]  # it stays put while all is well


def test_keepalived_is_reloaded_on_a_changed_config_and_restarted_when_killed(lab: Lab) -> None:
    (holder,) = holders(lab)
    backup = next(m for m in BALANCERS if m != holder)
    conf = "/etc/pgha/lab/keepalived/keepalived.conf"
    rendered = lab.ssh(holder, "cat", conf).stdout
    pid = _main_pid(lab, holder, "pgha-lab-keepalived")
    lab.ssh(holder, "sh", "-c", f"echo '# edited by hand' >> {conf}")
    res = lab.apply()  # checked with keepalived --config-test, then a reload: no move
    assert f"reload keepalived on {holder}" in res.stdout
    assert lab.ssh(holder, "cat", conf).stdout == rendered
    assert _main_pid(lab, holder, "pgha-lab-keepalived") == pid
    assert holders(lab) == [holder]
    # A killed keepalived (on the backup: the holder's would leave its VIP behind) comes
    # back by itself (Restart=always), before the operator's next cycle would.
    old_pid = _main_pid(lab, backup, "pgha-lab-keepalived")
    lab.ssh(backup, "kill", "-KILL", old_pid)  # its VRRP child goes with its parent
    wait_for(
        f"keepalived on {backup} again",
        lambda: _main_pid(lab, backup, "pgha-lab-keepalived") not in ("0", old_pid),
        10,
    )
    assert holder_changes(lab, 2) == [(holder,)]


def test_the_vip_moves_when_its_machine_dies_and_stays_when_it_returns(lab: Lab) -> None:
    (old,) = holders(lab)
    other = next(m for m in BALANCERS if m != old)
    lab.provider.power_off(old)  # from outside: the container's PID 1 is SIGKILLed
    wait_for(f"the VIP on {other}", lambda: holders(lab, (other,)) == [other], 30)
    write_through_vip(lab, 11, f"after {old} died")
    res = lab.apply()  # boots it again; its keepalived drops the stale copy, stays BACKUP
    assert f"create machine {old}" in res.stdout
    wait_for("one VIP holder again", lambda: holders(lab) == [other], 30)
    assert holder_changes(lab, 3) == [(other,)]  # no move back (nopreempt)


def test_the_vip_leaves_a_frozen_machine_and_does_not_flap_after(lab: Lab) -> None:
    (old,) = holders(lab)
    other = next(m for m in BALANCERS if m != old)
    lab.provider.freeze(old)  # every process stopped: a hung VM
    try:
        wait_for(f"the VIP on {other}", lambda: holders(lab, (other,)) == [other], 30)
        write_through_vip(lab, 12, f"while {old} was frozen")
    finally:
        lab.provider.thaw(old)
    # Resumed, the old master may take the VIP back once (its priority may be higher);
    # never more than that.
    seen = holder_changes(lab, 10)
    settled = [h for h in seen if len(h) == 1]
    assert len(settled) <= 2 and len(set(settled)) == len(settled), seen
    assert len(seen[-1]) == 1, seen
    write_through_vip(lab, 13, f"after {old} resumed")


def test_destroy_leaves_no_machine_mount_or_namespace(lab: Lab) -> None:
    assert leftovers(lab.provider, lab.state)  # the cluster is there before
    res = lab.cli("destroy", "-f", str(lab.manifest), "--state-dir", str(lab.state), "--yes")
    assert "cluster lab destroyed" in res.stdout
    assert leftovers(lab.provider, lab.state) == []
    assert not lab.state.exists()


DEBIAN_MANIFEST = """\
apiVersion: pgha/v1
kind: Cluster
metadata:
  name: deblab
spec:
  provider: {type: nspawn, network: 10.232.0.0/24}
  etcd: {members: 1, placement: colocated}
  postgres:
    instances: 2
    hba:
      - {type: hostssl, database: all, user: all, address: 10.232.0.1/32, method: scram-sha-256}
  patroni: {source: debian}
  loadBalancer: {instances: 1}
"""


def test_debian_patroni_source_on_nspawn_machines(tmp_path: Path) -> None:
    """spec.patroni.source: debian over SSH + systemd: Debian's /usr/bin/patroni (from the
    rootfs, since the machines have no network) runs under pgha-deblab-patroni.service."""
    manifest = tmp_path / "deblab.yaml"
    manifest.write_text(DEBIAN_MANIFEST)
    with lab_for(manifest) as deb:
        res = deb.apply(APPLY_TIMEOUT)
        assert "cluster deblab converged" in res.stdout
        show = ("systemctl", "show", "-p", "ExecStart", "--value", "pgha-deblab-patroni")
        for node in ("node1", "node2"):
            assert "path=/usr/bin/patroni " in deb.ssh(node, *show).stdout
            version = deb.ssh(node, "dpkg-query", "-W", "-f=${Version}", "patroni").stdout
            assert version.startswith("3.0.2")
            # Debian's own patroni.service would start on /etc/patroni/config.yml: masked.
            enabled = deb.ssh(node, "systemctl", "is-enabled", "patroni", check=False).stdout
            assert enabled.strip() == "masked"
        topo = deb.provider.topology
        for node in ("node1", "node2"):
            body = requests.get(f"{topo.rest_api_url(node)}/patroni", timeout=5, verify=deb.ca)
            body = body.json()
            assert body["patroni"]["version"] == "3.0.2"
        states = sorted((m["role"], m["state"]) for m in deb.members().values())
        assert states == [("primary", "running"), ("replica", "streaming")]
        with psycopg.connect(deb.dsn("primary") + " connect_timeout=5", autocommit=True) as conn:
            conn.execute("CREATE TABLE deb_rows (id int PRIMARY KEY)")
            conn.execute("INSERT INTO deb_rows VALUES (1)")

        def replica_sees_row() -> bool:
            with psycopg.connect(deb.dsn("replicas") + " connect_timeout=5") as conn:
                return conn.execute("SELECT id FROM deb_rows").fetchall() == [(1,)]

        wait_for("the row on the replica through :5001", replica_sees_row, 60)
        deb.cli("destroy", "-f", str(manifest), "--state-dir", str(deb.state), "--yes")
        assert leftovers(deb.provider, deb.state) == []
