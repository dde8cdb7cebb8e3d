"""The command line's contract, without starting anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pgha_operator.cli import main

SHIPPED = sorted(str(p) for p in Path("manifests").glob("*.yaml"))


@pytest.mark.parametrize("manifest", SHIPPED)
def test_validate_accepts_shipped_manifests(
    manifest: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", "-f", manifest]) == 0
    assert "is valid" in capsys.readouterr().out


def test_validate_refuses_with_file_field_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(Path("manifests/demo.yaml").read_text().replace("members: 3", "members: 4"))
    assert main(["validate", "-f", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "spec.etcd.members" in err and "even" in err


def test_schema_is_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "spec" in schema["properties"] and "apiVersion" in schema["properties"]


def test_plan_of_a_vagrant_cluster_is_the_full_bootstrap(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["plan", "-f", "manifests/vagrant.yaml", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    kinds = [a["type"] for a in plan["actions"]]
    assert kinds[:5] == ["CreateMachine"] * 5
    assert "StartService" in kinds and kinds[-1] == "WaitFor"


def test_render_writes_machine_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "-f", "manifests/vagrant.yaml", "--out", str(tmp_path)]) == 0
    patroni = yaml.safe_load((tmp_path / "node1/etc/pgha/postgres/patroni.yml").read_text())
    assert patroni["name"] == "node1" and patroni["etcd3"]["hosts"] == ["192.168.50.20:2379"]
    assert (tmp_path / "haproxynode/etc/pgha/postgres/haproxy.cfg").exists()
    assert (tmp_path / "etcdnode/etc/systemd/system/pgha-postgres-etcd.service").exists()


def test_destroy_refuses_without_yes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["destroy", "-f", "manifests/demo.yaml"]) == 2
    assert "--yes" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command", ["validate", "plan", "render", "apply", "run", "status", "dsn", "destroy"]
)
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert len(capsys.readouterr().out) > 100


def test_ssh_provider_takes_the_manifests_port(tmp_path: Path) -> None:
    from pgha_operator.core.spec import load
    from pgha_operator.shell.providers import make_provider

    text = (
        Path("manifests/ssh.example.yaml")
        .read_text()
        .replace("user: admin", "user: admin\n    port: 2222")
    )
    manifest = tmp_path / "ssh.yaml"
    manifest.write_text(text)
    cluster = load([manifest])[0].cluster
    assert make_provider(cluster, tmp_path / "state").port == 2222
