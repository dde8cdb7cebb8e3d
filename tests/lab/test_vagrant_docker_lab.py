"""The seed's own path, end to end: manifests/vagrant-lab.yaml through the real Vagrant and
its docker provider (root only; needs vagrant and docker.io, which `make setup` installs).

The module starts its own Docker engine (scripts/lab-dockerd.sh with a run and data dir of
its own: no iptables, no forwarding, no default bridge) and stops and purges it at the end,
so nothing of it outlives the tests: no daemon, container, network or image. The tests run
in order against one cluster (node1-3, etcdnode, haproxynode on 192.168.50.0/24, an
internal Docker network). The box is imported from the cached nspawn rootfs (built first
when absent, ~1-2 min).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgha_operator.core.facts.types import MachineState
from pgha_operator.core.spec import load
from pgha_operator.shell.providers import make_provider
from pgha_operator.shell.providers.vagrant import VagrantProvider
from tests.integration.cluster_helpers import wait_for
from tests.lab.test_nspawn_lab import REPO, Lab

MANIFEST = REPO / "manifests" / "vagrant-lab.yaml"
LAB_DOCKERD = REPO / "scripts" / "lab-dockerd.sh"
APPLY_TIMEOUT = 600  # may build the rootfs (~1-2 min) and import the box (~10 s) first
HAPROXY_CFG = "/etc/pgha/seed/haproxy.cfg"

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(
        os.geteuid() != 0 or not shutil.which("vagrant") or not shutil.which("dockerd"),
        reason="the vagrant lab needs root, vagrant and docker.io (make setup)",
    ),
]


def docker_leftovers(provider: VagrantProvider) -> list[str]:
    """What of the cluster Docker still holds: its containers, its network, the box."""
    from pgha_operator.shell.providers import vagrant_docker as vd

    found = [f"container {c}" for c in vd.docker("ps", "-a", "--format", "{{.Names}}").split()]
    found = [c for c in found if c.startswith(f"container pgha-{provider.cluster.name}-")]
    if vd.docker("network", "ls", "-q", "--filter", f"name=^{provider.docker_network}$").strip():
        found.append(f"network {provider.docker_network}")
    if vd.image_exists(vd.image_tag()):
        found.append(f"image {vd.image_tag()}")
    return found


@contextlib.contextmanager
def lab_dockerd(run_dir: Path, data_dir: Path) -> Iterator[str]:
    """The lab's own dockerd for the module; stopped (and its data deleted) at the end."""
    env = {**os.environ, "PGHA_LAB_RUN": str(run_dir), "PGHA_LAB_DATA": str(data_dir)}
    res = subprocess.run(
        [str(LAB_DOCKERD), "start"], capture_output=True, text=True, env=env, timeout=120
    )
    assert res.returncode == 0, res.stderr
    host = res.stdout.strip().removeprefix("export DOCKER_HOST=")
    try:
        yield host
    finally:
        subprocess.run([str(LAB_DOCKERD), "purge"], env=env, timeout=120, check=False)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    state = Path(tempfile.mkdtemp(prefix="pgha-vlab-", dir="/tmp"))
    run_dir = Path(tempfile.mkdtemp(prefix="pgha-vlab-run-", dir="/run"))
    data_dir = Path(tempfile.mkdtemp(prefix="pgha-vlab-docker-", dir="/var/tmp"))
    with pytest.MonkeyPatch.context() as mp, lab_dockerd(run_dir, data_dir) as docker_host:
        mp.setenv("DOCKER_HOST", docker_host)  # for the CLI it runs, and for vagrant
        cluster = load([str(MANIFEST)])[0].cluster
        provider = make_provider(cluster, state)
        assert isinstance(provider, VagrantProvider) and provider.docker
        lab = Lab(state, provider, MANIFEST)  # type: ignore[arg-type]
        try:
            yield lab
        finally:
            lab.cli("destroy", "-f", str(MANIFEST), "--state-dir", str(state), "--yes", check=False)
            for m in provider.topology.machines:  # a destroy that failed: sweep up
                with contextlib.suppress(Exception):
                    provider.destroy(m.name)
            shutil.rmtree(state, ignore_errors=True)
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.rmtree(data_dir, ignore_errors=True)


def test_apply_then_write_through_5000_and_read_through_5001(lab: Lab) -> None:
    res = lab.apply(APPLY_TIMEOUT)
    assert "cluster seed converged" in res.stdout
    primary_dsn = lab.dsn("primary") + " connect_timeout=5"
    replica_dsn = lab.dsn("replicas") + " connect_timeout=5"
    assert "host=192.168.50.30 port=5000" in primary_dsn
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


def test_machines_are_vagrant_docker_machines_with_systemd_and_pinned_keys(lab: Lab) -> None:
    provider = lab.provider
    assert isinstance(provider, VagrantProvider)
    status = provider.vagrant("status", "--machine-readable").stdout
    for name in ("node1", "node2", "node3", "etcdnode", "haproxynode"):
        assert f",seed-{name},provider-name,docker" in status
        assert f",seed-{name},state,running" in status
        seen = provider.host(name).run(["sh", "-c", "hostname; cat /proc/1/comm"]).stdout
        assert seen.split() == [name, "systemd"]
    assert lab.ssh("node1", "hostname").stdout.strip() == "node1"  # the CLI's ssh too
    # Every machine's host key is the one the operator generated, pinned in its known_hosts.
    pinned = (lab.state / "known_hosts").read_text()
    key = (provider.vm_dir / "node1" / "ssh_host_ed25519_key.pub").read_text().split()[1]
    assert f"192.168.50.11 ssh-ed25519 {key}" in pinned
    out = lab.ssh("haproxynode", "systemctl", "is-active", "pgha-seed-haproxy", check=False)
    assert out.stdout.strip() == "active"
    assert provider.machine_state("node1") == MachineState.RUNNING
    assert provider.machine_state("haproxynode") == MachineState.PATRONI_DOWN  # none there


def test_hand_edited_haproxy_cfg_is_restored(lab: Lab) -> None:
    rendered = lab.ssh("haproxynode", "cat", HAPROXY_CFG).stdout
    lab.ssh("haproxynode", "sh", "-c", f"echo '# edited by hand' >> {HAPROXY_CFG}")
    assert lab.ssh("haproxynode", "cat", HAPROXY_CFG).stdout != rendered
    res = lab.apply()
    assert "reload haproxy on haproxynode" in res.stdout
    assert lab.ssh("haproxynode", "cat", HAPROXY_CFG).stdout == rendered
    with psycopg.connect(lab.dsn("primary") + " connect_timeout=5") as conn:
        assert conn.execute("SELECT count(*) FROM lab_rows").fetchone() == (1,)


def test_halted_primary_fails_over_and_comes_back_as_replica(lab: Lab) -> None:
    old = wait_for("one primary", lab.primary, 60)
    lab.provider.power_off(old)  # vagrant halt --force: docker stop -t 0, a power cut
    assert lab.provider.machine_state(old) == MachineState.DEAD
    new = wait_for("a new primary", lambda: (p := lab.primary()) and p != old and p, 120)

    def write_after_the_halt() -> bool:  # once HAProxy's checks (seed: 3 s x 2) see it
        with psycopg.connect(lab.dsn("primary") + " connect_timeout=5", autocommit=True) as c:
            c.execute("INSERT INTO lab_rows VALUES (2, 'after the halt') ON CONFLICT DO NOTHING")
        return True

    wait_for("a write through :5000 to the new primary", write_after_the_halt, 60)
    res = lab.apply()  # vagrant up boots the container again (its disk kept); Patroni rejoins
    assert f"create machine {old}" in res.stdout
    wait_for(f"{old} back as a streaming replica", lambda: lab.streaming_replica(old), 120)
    assert lab.primary() == new
    with psycopg.connect(lab.dsn("replicas") + " connect_timeout=5") as conn:
        wait_for(
            "both rows on a replica",
            lambda: conn.execute("SELECT count(*) FROM lab_rows").fetchone() == (2,),
            30,
        )


def test_destroy_leaves_no_container_network_or_box(lab: Lab) -> None:
    provider = lab.provider
    assert isinstance(provider, VagrantProvider)
    assert docker_leftovers(provider)  # the cluster is there before
    res = lab.cli("destroy", "-f", str(MANIFEST), "--state-dir", str(lab.state), "--yes")
    assert "cluster seed destroyed" in res.stdout
    assert docker_leftovers(provider) == []
    assert not lab.state.exists()
