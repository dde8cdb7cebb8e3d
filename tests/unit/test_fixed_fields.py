"""Creation-time fields: the controller holds a live cluster to them (no processes)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from structlog.testing import capture_logs

from pgha_operator.core.spec import ManifestError
from pgha_operator.shell.controller import Controller
from pgha_operator.shell.state.last_applied import FILE_NAME as LAST_APPLIED

DEMO = Path(__file__).resolve().parents[2] / "manifests" / "demo.yaml"


def debian_manifest(tmp_path: Path) -> Path:
    doc = yaml.safe_load(DEMO.read_text())
    doc["spec"]["patroni"] = {"source": "debian"}
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def running_cluster(tmp_path: Path) -> Path:
    """A state dir whose last applied manifest is the shipped demo (Patroni from PyPI)."""
    state = tmp_path / "state"
    state.mkdir()
    (state / LAST_APPLIED).write_text(DEMO.read_text())
    return state


def test_a_new_cluster_may_choose_any_source(tmp_path: Path) -> None:
    ctl = Controller([str(debian_manifest(tmp_path))], state_dir=tmp_path / "fresh")
    assert ctl.cluster.spec.patroni.source == "debian"
    assert ctl.binaries.patroni == "/usr/bin/patroni"


def test_changing_the_source_of_a_running_cluster_is_refused(tmp_path: Path) -> None:
    manifest = debian_manifest(tmp_path)
    state = running_cluster(tmp_path)
    with pytest.raises(ManifestError) as err:
        Controller([str(manifest)], state_dir=state)
    (problem,) = err.value.problems
    assert problem.file == str(manifest) and problem.path == "spec.patroni.source"
    assert "'pypi'" in problem.reason and "'debian'" in problem.reason


def test_status_and_destroy_keep_to_the_running_cluster(tmp_path: Path) -> None:
    manifest = debian_manifest(tmp_path)
    ctl = Controller(
        [str(manifest)], state_dir=running_cluster(tmp_path), fall_back_to_last_applied=True
    )
    assert ctl.cluster.spec.patroni.source == "pypi"
    assert ctl.binaries.patroni_source == "pypi"
    assert ctl.manifest_error and "spec.patroni.source" in ctl.manifest_error


def test_run_refuses_the_edit_and_keeps_the_accepted_manifest(tmp_path: Path) -> None:
    state = running_cluster(tmp_path)
    manifest = tmp_path / "demo.yaml"
    manifest.write_text(DEMO.read_text())
    ctl = Controller([str(manifest)], state_dir=state)
    generation = ctl.generation
    manifest.write_text(debian_manifest(tmp_path).read_text())
    with capture_logs() as logs:
        ctl.reload_manifest()
    assert [e["log_level"] for e in logs] == ["error"]
    assert "spec.patroni.source" in logs[0]["error"]
    assert ctl.cluster.spec.patroni.source == "pypi"
    assert ctl.generation == generation
    assert ctl.manifest_error and "spec.patroni.source" in ctl.manifest_error
    manifest.write_text(DEMO.read_text().replace("max_connections: 200", "max_connections: 300"))
    with capture_logs():
        ctl.reload_manifest()
    assert ctl.manifest_error is None and ctl.generation == generation + 1


def test_a_last_applied_of_another_version_does_not_block(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / LAST_APPLIED).write_text("apiVersion: pgha/v0\n")
    with capture_logs() as logs:
        ctl = Controller([str(debian_manifest(tmp_path))], state_dir=state)
    assert ctl.manifest_error is None
    assert [e["log_level"] for e in logs] == ["warning"]
    assert "another operator version" in logs[0]["event"] and logs[0]["file"].endswith(LAST_APPLIED)
