"""The operator as a systemd service, on a machine with real systemd (issue 15; root only).

One nspawn machine (booted from the cached rootfs, see test_nspawn_lab.py) gets the project
the way an administrator installs it: the source tree copied in, a venv made with Debian's
python3 and `pip install --no-index` from a wheel directory built on this host (the machine
has no network), then `pgha-operator install-service`. A small `local`-provider cluster
(1 etcd, 1 PostgreSQL, 1 HAProxy, all inside that machine) is put in its manifest directory.

The tests run in order and print their figures:
- the service comes up (READY after the first cycle) and the cluster converges;
- `kill -9` of the operator's main PID: systemd restarts it and the new operator adopts the
  cluster, every daemon keeping its PID;
- a reboot of the machine: the operator and the cluster come back.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pgha_operator.core.spec import parse_text
from pgha_operator.core.topology import build
from pgha_operator.shell.hosts.ssh import SshHost
from pgha_operator.shell.providers.nspawn import NspawnProvider
from tests.integration.cluster_helpers import wait_for

REPO = Path(__file__).parents[2]
WHEEL_CACHE = Path("/var/cache/pgha-operator/operator-wheels")
MACHINE = "node1"
HOST_MANIFEST = """apiVersion: pgha/v1
kind: Cluster
metadata: {name: svclab}
spec:
  provider: {type: nspawn, network: 10.233.0.0/24}
  etcd: {members: 1, placement: colocated}
  postgres: {instances: 1}
  loadBalancer: {instances: 1}
"""
# The cluster the service runs inside the machine (its loopback is the machine's own).
CLUSTER = "small"
CLUSTER_MANIFEST = f"""apiVersion: pgha/v1
kind: Cluster
metadata: {{name: {CLUSTER}}}
spec:
  provider: {{type: local, network: 127.0.80.0/24}}
  profile: fast
  etcd: {{members: 1}}
  postgres: {{instances: 1}}
  loadBalancer: {{instances: 1}}
"""
VENV = "/opt/pgha-operator/venv"
SRC = "/opt/pgha-operator/src"
WHEELS_IN_MACHINE = "/var/tmp/pgha-operator-wheels"
MANIFESTS = "/etc/pgha-operator/manifests"
STATE = f"/var/lib/pgha-operator/{CLUSTER}"
UNIT = "pgha-operator.service"
SKIP = {".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis", "build"}

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(
        os.geteuid() != 0 or not shutil.which("systemd-nspawn"),
        reason="lab tests need root and systemd-nspawn (make setup)",
    ),
]


@dataclass
class Machine:
    provider: NspawnProvider
    figures: dict[str, float]

    @property
    def host(self) -> SshHost:
        return self.provider.host(MACHINE)

    def sh(self, script: str, timeout: float = 120, check: bool = True) -> str:
        res = self.host.run(["sh", "-c", script], timeout=timeout, check=False)
        if check and res.returncode != 0:
            raise AssertionError(f"{script!r} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
        return res.stdout

    def unit(self, *props: str) -> dict[str, str]:
        out = self.sh(f"systemctl show {UNIT} " + " ".join(f"-p {p}" for p in props))
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def status(self) -> dict[str, Any]:
        out = self.sh(
            f"{VENV}/bin/pgha-operator status -f {MANIFESTS}/{CLUSTER}.yaml "
            f"--state-dir {STATE} --json",
            check=False,
        )
        return json.loads(out)

    def converged(self) -> bool:
        return self.status().get("phase") == "Converged"

    def daemon_pids(self) -> dict[str, int]:
        """Every daemon of the cluster (pid files of the local supervisor, the postmaster),
        only those alive."""
        script = (
            f'for f in {STATE}/machines/*/run/pgha/*.pid; do echo "$f $(cat $f)"; done; '
            f"for f in {STATE}/machines/*/pg/data/postmaster.pid; do "
            'echo "$f {\\"pid\\": $(head -1 $f)}"; done'
        )
        pids = {}
        for line in self.sh(script).splitlines():
            path, _, record = line.partition(" ")
            pid = int(json.loads(record)["pid"])
            if self.host.run(["kill", "-0", str(pid)], check=False).ok:
                pids[path.removeprefix(f"{STATE}/machines/")] = pid
        return pids

    def operator_active(self, not_pid: str | None = None) -> str | None:
        """The operator's main PID once the unit is active (READY sent), else None."""
        props = self.unit("ActiveState", "MainPID")
        pid = props.get("MainPID", "0")
        if props.get("ActiveState") == "active" and pid not in ("0", not_pid):
            return pid
        return None


def operator_wheels() -> Path:
    """Wheels of every dependency (and the build backend), built on this host once per
    pyproject.toml: the machine installs offline from them."""
    key = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()[:12]
    final = WHEEL_CACHE / key
    if final.is_dir():
        return final
    WHEEL_CACHE.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=WHEEL_CACHE))
    pip = [sys.executable, "-m", "pip", "-q"]
    subprocess.run([*pip, "wheel", "-w", str(build), str(REPO)], check=True, timeout=900)
    subprocess.run(
        [*pip, "download", "-d", str(build), "setuptools>=68", "wheel"], check=True, timeout=300
    )
    for own in build.glob("pgha_operator-*.whl"):
        own.unlink()  # the machine installs the source tree itself (editable)
    os.rename(build, final)
    return final


def copy_project(root: Path) -> None:
    """The source tree and the wheels into the machine's disk (its overlay, from outside)."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        return {n for n in names if n in SKIP or n.endswith(".egg-info")}

    shutil.copytree(REPO, root / SRC.lstrip("/"), ignore=ignore)
    shutil.copytree(operator_wheels(), root / WHEELS_IN_MACHINE.lstrip("/"))


@pytest.fixture(scope="module")
def machine() -> Iterator[Machine]:
    state = Path(tempfile.mkdtemp(prefix="pgha-svclab-", dir="/tmp"))
    cluster = parse_text(HOST_MANIFEST, "svclab.yaml")[0][0].cluster
    provider = NspawnProvider(cluster, state, build(cluster))
    m = Machine(provider, {})
    try:
        provider.preflight()
        started = time.monotonic()
        provider.create(build(cluster).machine(MACHINE))
        m.figures["machine boot (s)"] = time.monotonic() - started
        yield m
    finally:
        print("\nfigures: " + json.dumps({k: round(v, 1) for k, v in m.figures.items()}))
        with contextlib.suppress(Exception):
            print(m.sh(f"journalctl -u {UNIT} --no-pager | tail -40", check=False))
        provider.destroy(MACHINE)
        shutil.rmtree(state, ignore_errors=True)


def test_install_service_brings_the_cluster_up(machine: Machine) -> None:
    started = time.monotonic()
    copy_project(machine.provider.root(MACHINE))
    machine.sh(
        f"/usr/bin/python3 -m venv {VENV} && {VENV}/bin/pip install -q --no-index "
        f"--find-links {WHEELS_IN_MACHINE} -e {SRC}",
        timeout=600,
    )
    machine.figures["install into the machine (s)"] = time.monotonic() - started
    machine.sh(
        f"mkdir -p {MANIFESTS} && cat > {MANIFESTS}/{CLUSTER}.yaml <<'EOF'\n{CLUSTER_MANIFEST}EOF"
    )
    started = time.monotonic()
    # enable --now returns once the unit is active: after READY=1 (the first cycle ran).
    out = machine.sh(f"{VENV}/bin/pgha-operator install-service", timeout=600)
    assert "enabled and started" in out
    machine.figures["install-service until READY (s)"] = time.monotonic() - started
    assert machine.operator_active()
    assert f"ExecStart={VENV}/bin/pgha-operator run -f {MANIFESTS}" in machine.sh(
        f"systemctl cat {UNIT}"
    )
    wait_for("the cluster converged", machine.converged, timeout=300, step=2)
    machine.figures["install-service until Converged (s)"] = time.monotonic() - started
    assert machine.unit("NRestarts")["NRestarts"] == "0"


def test_kill_9_of_the_operator_is_restarted_and_adopts_the_cluster(machine: Machine) -> None:
    before = machine.daemon_pids()
    assert len(before) >= 4, before  # etcd, patroni, postmaster, haproxy
    old = machine.operator_active()
    assert old
    started = time.monotonic()
    machine.sh(f"kill -9 {old}")
    new = wait_for("a new operator active", lambda: machine.operator_active(old), timeout=120)
    machine.figures["kill -9 -> operator active again (s)"] = time.monotonic() - started
    assert new != old
    assert machine.unit("NRestarts")["NRestarts"] == "1"
    wait_for("converged after the restart", machine.converged, timeout=120, step=1)
    machine.figures["kill -9 -> Converged (s)"] = time.monotonic() - started
    # A few cycles of the new operator later, every daemon still has its PID.
    time.sleep(5)
    assert machine.daemon_pids() == before
    assert machine.converged()


def test_a_reboot_brings_the_operator_and_the_cluster_back(machine: Machine) -> None:
    provider = machine.provider
    started = time.monotonic()
    machine.host.run(["systemctl", "reboot"], check=False, timeout=30)
    # An nspawn machine's reboot ends its systemd-nspawn; booting it again is the restart.
    wait_for("the machine went down", lambda: not provider.running(MACHINE), timeout=180)
    machine.figures["reboot: shutdown (s)"] = time.monotonic() - started
    provider.start(MACHINE)  # waits for sshd and `systemctl is-system-running --wait`
    machine.figures["reboot: machine up (s)"] = time.monotonic() - started
    wait_for("the operator active", machine.operator_active, timeout=300, step=1)
    machine.figures["reboot -> operator active (s)"] = time.monotonic() - started
    wait_for("the cluster converged", machine.converged, timeout=300, step=2)
    machine.figures["reboot -> Converged (s)"] = time.monotonic() - started
    assert len(machine.daemon_pids()) >= 4


def test_uninstall_service_stops_the_operator_and_leaves_the_cluster(machine: Machine) -> None:
    before = machine.daemon_pids()
    out = machine.sh(f"{VENV}/bin/pgha-operator uninstall-service")
    assert "the clusters keep running" in out
    assert machine.sh(f"systemctl is-active {UNIT}", check=False).strip() in ("inactive", "unknown")
    assert machine.sh(f"test -e /etc/systemd/system/{UNIT} || echo gone").strip() == "gone"
    assert machine.daemon_pids() == before
    assert machine.converged()
