"""The Vagrant provider with vmProvider docker, without a Docker engine: the machine list
it writes, what the real Vagrantfile makes of it (`vagrant validate`), the host's address on
the network, and the network check (docker's answers recorded). The lab test runs it all for
real (tests/lab/test_vagrant_docker_lab.py)."""

from __future__ import annotations

import ipaddress
import json
import shutil
from pathlib import Path

import pytest

from pgha_operator.core.errors import PermanentError
from pgha_operator.core.spec import load
from pgha_operator.shell.providers import vagrant_docker as vd
from pgha_operator.shell.providers.vagrant import VagrantProvider

MANIFEST = Path(__file__).parents[2] / "manifests" / "vagrant-lab.yaml"


@pytest.fixture
def provider(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> VagrantProvider:
    monkeypatch.setenv("VAGRANT_HOME", str(tmp_path / "vagrant-home"))
    return VagrantProvider(load([MANIFEST])[0].cluster, tmp_path / "state")


def test_machine_list_names_the_box_network_run_args_and_keys(provider: VagrantProvider) -> None:
    data = json.loads(provider.write_machine_list().read_text())
    assert data["provider"] == "docker"
    assert data["image"] == vd.image_tag() and data["image"].startswith("pgha-operator/debian12:")
    assert data["docker_network"] == "pgha-seed"
    assert data["client_key"] == str(provider.state_dir / "ssh" / "id_ed25519")
    assert "--cap-drop=SYS_RESOURCE" in data["docker_run_args"]
    assert not any("privileged" in a for a in data["docker_run_args"])  # fails on this kernel
    assert {m["hostname"]: m["address"] for m in data["machines"]} == {
        "etcdnode": "192.168.50.20",
        "node1": "192.168.50.11",
        "node2": "192.168.50.12",
        "node3": "192.168.50.13",
        "haproxynode": "192.168.50.30",
    }


@pytest.mark.skipif(not shutil.which("vagrant"), reason="Debian's vagrant package (make setup)")
def test_vagrantfile_accepts_a_docker_machine_list(provider: VagrantProvider) -> None:
    provider.write_machine_list()
    res = provider.vagrant("validate", "--ignore-provider", check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    for name in ("etcdnode", "node1", "node2", "node3", "haproxynode"):
        assert f"==> seed-{name}:" in res.stdout


def test_the_host_takes_the_first_address_no_machine_uses() -> None:
    net = ipaddress.IPv4Network("192.168.50.0/24")
    assert vd.gateway(net, ["192.168.50.11", "192.168.50.30"]) == "192.168.50.1"
    assert vd.gateway(net, ["192.168.50.1", "192.168.50.2"]) == "192.168.50.3"
    with pytest.raises(PermanentError, match="no address left"):
        vd.gateway(ipaddress.IPv4Network("10.0.0.0/30"), ["10.0.0.1", "10.0.0.2"])


def recorded_docker(monkeypatch: pytest.MonkeyPatch, inspect: dict[str, object]) -> list[tuple]:
    calls: list[tuple] = []

    def fake(*args: str, **_: object) -> str:
        calls.append(args)
        if args[:2] == ("network", "ls"):
            return "abc123\n"
        if args[:2] == ("network", "inspect"):
            return json.dumps([inspect])
        return ""

    monkeypatch.setattr(vd, "docker", fake)
    return calls


def test_an_existing_network_of_another_shape_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    recorded_docker(
        monkeypatch, {"Internal": False, "IPAM": {"Config": [{"Subnet": "192.168.50.0/24"}]}}
    )
    with pytest.raises(PermanentError, match="internal: False"):
        vd.ensure_network("pgha-seed", ipaddress.IPv4Network("192.168.50.0/24"), "192.168.50.1")


def test_an_existing_internal_network_of_the_subnet_is_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = recorded_docker(
        monkeypatch, {"Internal": True, "IPAM": {"Config": [{"Subnet": "192.168.50.0/24"}]}}
    )
    vd.ensure_network("pgha-seed", ipaddress.IPv4Network("192.168.50.0/24"), "192.168.50.1")
    assert not any(c[:2] == ("network", "create") for c in calls)
