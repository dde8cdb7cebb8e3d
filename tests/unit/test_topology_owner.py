"""The controller builds the topology once per accepted manifest and hands it to the
provider, so a machine provider finds the machines a scaled manifest adds."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgha_operator.shell.controller import Controller


@pytest.mark.parametrize(
    ("manifest", "before", "after", "new"),
    [
        ("manifests/nspawn.yaml", "instances: 3", "instances: 4", "node4"),
        (
            "manifests/vagrant.yaml",
            "      - {name: node3, address: 192.168.50.13}\n",
            "      - {name: node3, address: 192.168.50.13}\n      - {name: node4, address: 192.168.50.14}\n",
            "node4",
        ),
        (
            "manifests/ssh.example.yaml",
            "      - {name: pg3, address: 10.0.0.13}\n",
            "      - {name: pg3, address: 10.0.0.13}\n      - {name: pg4, address: 10.0.0.14}\n",
            "pg4",
        ),
    ],
)
def test_the_provider_follows_the_controllers_topology(
    tmp_path: Path, manifest: str, before: str, after: str, new: str
) -> None:
    text = Path(manifest).read_text()
    assert before in text
    path = tmp_path / "cluster.yaml"
    path.write_text(text)
    ctl = Controller([str(path)], state_dir=tmp_path / "state")
    provider = ctl.provider
    assert provider.topology is ctl.topology  # type: ignore[attr-defined]  # one owner
    assert new not in ctl.topology.postgres

    scaled = text.replace(before, after)
    if before != "instances: 3":  # machines listed by hand: their count follows
        scaled = scaled.replace("instances: 3", "instances: 4", 1)
    path.write_text(scaled)
    ctl.reload_manifest()
    assert ctl.manifest_error is None
    assert new in ctl.topology.postgres
    # before: the provider kept the topology of the manifest it was made with
    assert provider.topology is ctl.topology  # type: ignore[attr-defined]
    assert provider.topology.address(new) == ctl.topology.address(new)  # type: ignore[attr-defined]
