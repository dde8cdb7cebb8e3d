"""spec.loadBalancer.vip refused where it cannot live: the file, the field and the reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pgha_operator.core.spec import parse_text
from pgha_operator.core.vip import vip_interface

REPO = Path(__file__).parents[2]

BASE = """\
apiVersion: pgha/v1
kind: Cluster
metadata: {{name: v}}
spec:
  provider: {provider}
  loadBalancer:
    instances: 2
    vip: {vip}
"""
NSPAWN = "{type: nspawn, network: 10.231.0.0/24}"


def problems(provider: str, vip: str) -> list[tuple[str, str, int | None]]:
    clusters, found = parse_text(BASE.format(provider=provider, vip=vip), "vip.yaml")
    assert not clusters or not found
    return [(p.path, p.reason, p.line) for p in found]


def test_the_local_provider_refuses_a_vip_with_the_reason() -> None:
    (found,) = problems("{type: local}", "{address: 127.0.10.250}")
    path, reason, line = found
    assert path == "spec.loadBalancer.vip"
    assert "local provider cannot carry a virtual IP" in reason
    assert "loopback" in reason
    assert line == 8  # the `vip:` line


def test_validate_names_file_field_and_reason(tmp_path: Path) -> None:
    manifest = tmp_path / "local-vip.yaml"
    manifest.write_text(BASE.format(provider="{type: local}", vip="{address: 127.0.10.250}"))
    res = subprocess.run(
        [sys.executable, "-m", "pgha_operator.cli", "validate", "-f", str(manifest)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert f"{manifest}:8" in out
    assert "spec.loadBalancer.vip" in out and "keepalived refuses a loopback interface" in out


@pytest.mark.parametrize(
    ("vip", "path", "words"),
    [
        ("{address: 10.231.0.201}", "spec.loadBalancer.vip.address", "already used by"),
        ("{address: 10.9.0.5}", "spec.loadBalancer.vip.address", "outside spec.provider"),
        ("{address: 10.231.0.255}", "spec.loadBalancer.vip.address", "broadcast"),
        ("{address: 127.0.0.5}", "spec.loadBalancer.vip.address", "loopback"),
    ],
)
def test_an_address_the_network_cannot_give_is_refused(vip: str, path: str, words: str) -> None:
    (found,) = problems(NSPAWN, vip)
    assert found[0] == path and words in found[1], found


def test_ssh_hosts_must_name_the_interface() -> None:
    ssh = "{type: ssh, keyFile: k, knownHosts: h}"
    text = BASE.format(provider=ssh, vip="{address: 10.0.0.50}").replace(
        "    instances: 2\n",
        "    instances: 2\n    machines: [{name: a, address: 10.0.0.1}, {name: b, address: 10.0.0.2}]\n",
    )
    text = text.replace(
        "  loadBalancer:",
        "  postgres:\n    machines: [{name: p, address: 10.0.0.3}]\n"
        "    instances: 1\n  etcd: {members: 1, placement: colocated}\n  loadBalancer:",
    )
    found = [(p.path, p.reason) for p in parse_text(text, "ssh.yaml")[1]]
    assert [p for p, _ in found] == ["spec.loadBalancer.vip.interface"], found
    named = text.replace("vip: {address: 10.0.0.50}", "vip: {address: 10.0.0.50, interface: ens3}")
    (loaded,), none = parse_text(named, "ssh.yaml")
    assert none == [] and vip_interface(loaded.cluster.spec) == "ens3"


def test_nspawn_and_vagrant_default_interfaces() -> None:
    (loaded,), found = parse_text(BASE.format(provider=NSPAWN, vip="{address: 10.231.0.250}"), "a")
    assert found == [] and vip_interface(loaded.cluster.spec) == "eth0"
    vagrant = "{type: vagrant, network: 192.168.50.0/24}"
    (loaded,), found = parse_text(
        BASE.format(provider=vagrant, vip="{address: 192.168.50.40}"), "b"
    )
    assert found == [] and vip_interface(loaded.cluster.spec) == "eth1"


def test_a_vip_with_one_load_balancer_is_accepted_with_a_warning() -> None:
    text = BASE.format(provider=NSPAWN, vip="{address: 10.231.0.250}").replace(
        "instances: 2", "instances: 1"
    )
    (loaded,), found = parse_text(text, "one.yaml")
    assert found == []
    assert any("nowhere to move" in w for w in loaded.warnings)
