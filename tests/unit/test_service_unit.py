"""The operator's systemd unit: its text, `systemd-analyze verify`, install-service --print,
and what install/uninstall do where systemd is not PID 1 (this machine)."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pgha_operator.cli import build_parser, main
from pgha_operator.cli.fleet import wants_fleet
from pgha_operator.core.errors import OperatorError, PermanentError
from pgha_operator.core.service_unit import UnitSettings, exec_start, exec_word, render_unit
from pgha_operator.shell import service_unit

BINARY = str(Path(sys.prefix) / "bin" / "pgha-operator")


def parse(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


def test_the_unit_is_a_notify_service_that_leaves_the_clusters_alone() -> None:
    unit = parse(render_unit(UnitSettings(binary=BINARY, listen="127.0.0.1:8800")))
    service = unit["Service"]
    assert service["Type"] == "notify"
    assert service["Restart"] == "always"
    assert service["KillMode"] == "process"  # daemons and machines outlive the operator
    assert service["WatchdogSec"] == "60"
    assert service["ExecStart"] == (
        f"{BINARY} run -f /etc/pgha-operator/manifests --state-root /var/lib/pgha-operator "
        "--listen 127.0.0.1:8800"
    )
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    # Nothing that would hide the machines' mounts or be inherited by the machines.
    for option in ("ProtectSystem", "PrivateTmp", "NoNewPrivileges", "RestrictSUIDSGID"):
        assert option not in service


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("/opt/pgha/bin/pgha-operator", "/opt/pgha/bin/pgha-operator"),
        ("/srv/my manifests", '"/srv/my manifests"'),
        ("/srv/100%", "/srv/100%%"),
        ("/srv/$HOME", '"/srv/$$HOME"'),
        ('/srv/a"b', '"/srv/a\\"b"'),
    ],
)
def test_exec_start_words_are_escaped_for_systemd(word: str, expected: str) -> None:
    assert exec_word(word) == expected


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="needs systemd-analyze")
@pytest.mark.parametrize("manifests", ["/etc/pgha-operator/manifests", "/srv/my manifests %i"])
def test_the_rendered_unit_passes_systemd_analyze_verify(tmp_path: Path, manifests: str) -> None:
    path = tmp_path / "pgha-operator.service"
    path.write_text(render_unit(UnitSettings(binary=BINARY, manifests=manifests)))
    res = subprocess.run(
        ["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr
    assert res.stderr.strip() == "", res.stderr  # no warning either (it warns on bad values)


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="needs systemd-analyze")
def test_verify_refuses_a_unit_whose_binary_is_missing() -> None:
    text = render_unit(UnitSettings(binary="/nonexistent/bin/pgha-operator"))
    with pytest.raises(PermanentError, match="not executable"):
        service_unit.verify(text, "pgha-operator.service")


def test_print_shows_the_unit_and_installs_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["install-service", "--print", "--manifests", "/srv/m", "--state-root", "/srv/s"]) == 0
    )
    out = capsys.readouterr().out
    assert exec_start(UnitSettings(binary=BINARY, manifests="/srv/m", state_root="/srv/s")) in out
    assert not Path("/srv/m").exists()


def test_relative_directories_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["install-service", "--print", "--manifests", "manifests"]) == 1
    assert "--manifests: 'manifests' is not an absolute path" in capsys.readouterr().err


def test_without_systemd_install_writes_the_unit_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service_unit, "systemd_running", lambda: False)
    settings = UnitSettings(
        binary=BINARY, manifests=str(tmp_path / "m"), state_root=str(tmp_path / "s")
    )
    with pytest.raises(PermanentError, match="systemd is not running.*--print"):
        service_unit.install(settings, "pgha-operator.service", unit_dir=tmp_path / "units")
    assert (tmp_path / "units" / "pgha-operator.service").read_text() == render_unit(settings)
    assert (tmp_path / "m").is_dir() and (tmp_path / "s").is_dir()


def test_uninstall_of_a_unit_that_is_not_there_does_nothing(tmp_path: Path) -> None:
    assert service_unit.uninstall("pgha-operator.service", unit_dir=tmp_path) is None


def run_args(*argv: str):  # noqa: ANN201
    return build_parser().parse_args(["run", *argv])


def test_run_with_a_directory_manages_every_cluster_and_a_file_stays_one(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("")
    assert wants_fleet(run_args("-f", str(tmp_path)))
    assert not wants_fleet(run_args("-f", str(tmp_path / "a.yaml")))
    assert not wants_fleet(run_args("-f", str(tmp_path), "--cluster", "a"))
    assert not wants_fleet(run_args("-f", str(tmp_path), "--state-dir", "/tmp/x"))
    assert wants_fleet(run_args("-f", str(tmp_path), "--state-root", "/tmp/x"))
    with pytest.raises(OperatorError, match="--state-root goes with one -f DIRECTORY"):
        wants_fleet(run_args("-f", str(tmp_path / "a.yaml"), "--state-root", "/tmp/x"))
