"""The controller builds the topology once per accepted manifest and hands it to the
provider, so a machine provider finds the machines a scaled manifest adds."""

from __future__ import annotations

from pathlib import Path

from pgha_operator.shell.controller import Controller
from pgha_operator.shell.providers.nspawn import NspawnProvider

MANIFEST = Path("manifests/nspawn.yaml")


def test_the_provider_follows_the_controllers_topology(tmp_path: Path) -> None:
    manifest = tmp_path / "lab.yaml"
    manifest.write_text(MANIFEST.read_text())
    ctl = Controller([str(manifest)], state_dir=tmp_path / "state")
    assert isinstance(ctl.provider, NspawnProvider)
    assert ctl.provider.topology is ctl.topology  # one owner, no second build

    manifest.write_text(MANIFEST.read_text().replace("instances: 3", "instances: 4"))
    ctl.reload_manifest()
    assert "node4" in ctl.topology.postgres
    assert ctl.provider.topology is ctl.topology
    # before: the provider kept the topology of the manifest it was made with
    assert ctl.provider.topology_address("node4") == ctl.topology.address("node4")
