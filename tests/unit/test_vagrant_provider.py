"""The Vagrant provider up to what this machine can run: the parsers on vagrant's outputs,
the machine list the operator writes, and `vagrant validate` (Debian's vagrant package) on
the repository's real Vagrantfile with that list. VMs cannot boot here."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgha_operator.core.spec import Cluster, load
from pgha_operator.shell.providers.vagrant import (
    PROJECT_DIR,
    SshConfig,
    VagrantProvider,
    parse_ssh_config,
    parse_status,
)

FIXTURES = Path(__file__).parent / "fixtures" / "vagrant"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


# --- parsers --------------------------------------------------------------------------------


def test_ssh_config_virtualbox() -> None:
    configs = parse_ssh_config(fixture("ssh_config_virtualbox.txt"))
    assert configs == {
        "node1": SshConfig(
            host="node1",
            hostname="127.0.0.1",
            user="vagrant",
            port=2222,
            identity_file="/home/dba/pgha-operator/.pgha/vagrant/dot/machines/node1/"
            "virtualbox/private_key",
        )
    }


def test_ssh_config_one_block_per_machine() -> None:
    configs = parse_ssh_config(fixture("ssh_config_two_machines.txt"))
    assert sorted(configs) == ["coney", "rabbit"]
    assert (configs["coney"].port, configs["rabbit"].port) == (2222, 2200)
    assert configs["rabbit"].identity_file.endswith("/rabbit/virtualbox/private_key")


def test_ssh_config_libvirt_uses_the_vm_address() -> None:
    config = parse_ssh_config(fixture("ssh_config_libvirt.txt"))["node2"]
    assert (config.hostname, config.port, config.user) == ("192.168.121.57", 22, "vagrant")


def test_ssh_config_quoted_identity_file() -> None:
    config = parse_ssh_config(fixture("ssh_config_quoted_path.txt"))["haproxynode"]
    assert config.identity_file == (
        "/home/dba/My Projects/pgha-operator/.pgha/vagrant/dot/machines/haproxynode/"
        "virtualbox/private_key"
    )


def test_ssh_config_missing_field_is_an_error() -> None:
    text = "Host node1\n  HostName 127.0.0.1\n  User vagrant\n  Port 2222\n"
    with pytest.raises(ValueError, match="node1 lacks identityfile"):
        parse_ssh_config(text)


def test_status_states() -> None:
    assert parse_status(fixture("status_running.txt")) == {
        "node1": "running",
        "node2": "poweroff",
        "haproxynode": "not_created",
    }


def test_status_without_provider_lists_nothing() -> None:
    assert parse_status(fixture("status_no_provider_captured.txt")) == {}


# --- the machine list and the real Vagrantfile --------------------------------------------------


@pytest.fixture
def provider(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[VagrantProvider]:
    # Vagrant's own home (plugins, boxes) and data dir stay in the test's directory.
    monkeypatch.setenv("VAGRANT_HOME", str(tmp_path / "vagrant-home"))
    cluster = load(["manifests/vagrant.yaml"])[0].cluster
    yield VagrantProvider(cluster, tmp_path / "state")


def test_machine_list_is_the_seed_topology(provider: VagrantProvider) -> None:
    data = json.loads(provider.write_machine_list().read_text())
    assert (data["box"], data["box_version"], data["provider"]) == (
        "generic/debian12",
        "4.3.12",
        "virtualbox",
    )
    # Inside the VMs, the seed's hostnames; Vagrant's names carry the cluster.
    assert {m["hostname"]: m["address"] for m in data["machines"]} == {
        "etcdnode": "192.168.50.20",
        "node1": "192.168.50.11",
        "node2": "192.168.50.12",
        "node3": "192.168.50.13",
        "haproxynode": "192.168.50.30",
    }
    assert all(m["name"] == f"postgres-{m['hostname']}" for m in data["machines"])
    assert all(m["host_key"].startswith(str(provider.state_dir)) for m in data["machines"])


def test_nothing_created_means_no_machines_and_no_vagrant_call(
    provider: VagrantProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # vagrant would not even be found
    assert provider.machines() == []


@pytest.mark.skipif(not shutil.which("vagrant"), reason="Debian's vagrant package (make setup)")
def test_vagrant_validate_accepts_the_real_vagrantfile(provider: VagrantProvider) -> None:
    from pgha_operator.shell.providers.sshkeys import generate_host_key

    assert provider.project_dir == PROJECT_DIR
    for m in provider.topology.machines:
        generate_host_key(provider._host_key(m.name), comment=m.name)
    provider.write_machine_list()
    # --ignore-provider: neither VirtualBox nor libvirt is installed here.
    res = provider.vagrant("validate", "--ignore-provider", check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Vagrantfile validated successfully" in res.stdout
    for name in ("etcdnode", "node1", "node2", "node3", "haproxynode"):
        assert f"==> postgres-{name}:" in res.stdout
    assert not (PROJECT_DIR / ".vagrant").exists()  # vagrant's data stays in the work dir


@pytest.mark.skipif(not shutil.which("vagrant"), reason="Debian's vagrant package (make setup)")
def test_vagrant_validate_refuses_a_broken_machine_list(provider: VagrantProvider) -> None:
    provider.machines_file.parent.mkdir(parents=True)
    provider.machines_file.write_text('{"machines": [{"name": "node1"}]}')  # no address
    res = provider.vagrant("validate", "--ignore-provider", check=False)
    assert res.returncode != 0
    assert "address" in res.stderr + res.stdout


# --- two clusters on one host ------------------------------------------------------------------


def cluster_named(name: str, where: Path) -> Cluster:
    text = Path("manifests/vagrant.yaml").read_text().replace("name: postgres", f"name: {name}")
    path = where / f"{name}.yaml"
    path.write_text(text)
    return load([path])[0].cluster


@pytest.fixture
def two(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[VagrantProvider, ...]:
    """Clusters `alpha` and `beta` (the same seed topology), and a `vagrant` on PATH that
    records each call with the work dir it was given."""
    monkeypatch.setenv("VAGRANT_HOME", str(tmp_path / "vagrant-home"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "vagrant"
    fake.write_text(
        '#!/bin/sh\necho "$VAGRANT_DOTFILE_PATH|$PGHA_VAGRANT_MACHINES|$*" >> "$VAGRANT_LOG"\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("VAGRANT_LOG", str(tmp_path / "calls.log"))
    return tuple(
        VagrantProvider(cluster_named(n, tmp_path), tmp_path / "state" / n)
        for n in ("alpha", "beta")
    )


def calls(tmp_path: Path) -> list[list[str]]:
    return [line.split("|") for line in (tmp_path / "calls.log").read_text().splitlines()]


def test_each_cluster_has_its_own_work_dir_and_vm_names(two: tuple[VagrantProvider, ...]) -> None:
    alpha, beta = two
    assert alpha.work_dir == alpha.state_dir / "vagrant-work"
    assert alpha.work_dir != beta.work_dir
    assert alpha.env()["VAGRANT_DOTFILE_PATH"] != beta.env()["VAGRANT_DOTFILE_PATH"]
    lists = [json.loads(p.write_machine_list().read_text()) for p in two]
    names = [{m["name"] for m in data["machines"]} for data in lists]
    assert not names[0] & names[1]
    assert "alpha-node1" in names[0] and "beta-node1" in names[1]
    hostnames = [{m["hostname"] for m in data["machines"]} for data in lists]
    assert hostnames[0] == hostnames[1] == {"etcdnode", "node1", "node2", "node3", "haproxynode"}


def test_destroying_one_clusters_node1_never_names_the_others(
    two: tuple[VagrantProvider, ...], tmp_path: Path
) -> None:
    alpha, beta = two
    for p in two:
        marker = p.vm_dir / "node1" / "created"
        marker.parent.mkdir(parents=True)
        marker.write_text('{"address": "192.168.50.11"}\n')
    alpha.destroy("node1")
    alpha.power_off("node2")
    (dot, machines, args), (_, _, halt) = calls(tmp_path)
    assert args == "destroy -f alpha-node1" and halt == "halt --force alpha-node2"
    assert dot.startswith(str(alpha.state_dir)) and machines.startswith(str(alpha.state_dir))
    assert (beta.vm_dir / "node1" / "created").exists()  # beta's node1 untouched
    assert [m.name for m in beta.machines()] == ["node1"]
    *_, (dot, _, status) = calls(tmp_path)
    assert status == "status --machine-readable" and dot.startswith(str(beta.state_dir))


def test_a_failed_vagrant_status_is_no_answer_not_machines_down(
    two: tuple[VagrantProvider, ...], tmp_path: Path
) -> None:
    """Seen in a drill on the docker lab: `vagrant status` failed ("machine is locked" by a
    concurrent vagrant call) and every machine read as down, so the operator ran `vagrant up`
    on running machines."""
    from pgha_operator.core.errors import TemporaryError

    alpha, _ = two
    marker = alpha.vm_dir / "node1" / "created"
    marker.parent.mkdir(parents=True)
    marker.write_text('{"address": "192.168.50.11"}\n')
    failing = tmp_path / "bin" / "vagrant"
    failing.write_text("#!/bin/sh\necho 'the machine is locked' >&2\nexit 1\n")
    with pytest.raises(TemporaryError, match="locked"):
        alpha.machines()
