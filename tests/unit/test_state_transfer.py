"""`state export` / `state import` (shell/state/transfer.py, cli/state_cmd.py)."""

from __future__ import annotations

import io
import stat
import tarfile
from pathlib import Path

import pytest

from pgha_operator.cli import main
from pgha_operator.core.errors import PermanentError
from pgha_operator.shell.state import StateDir, identity, transfer
from tests.unit.test_rotation import converged_controller


def exported(tmp_path: Path) -> tuple[Path, Path]:
    _, ctl = converged_controller(tmp_path)
    identity.ensure_cluster_id(ctl.state_dir)  # what the ssh provider makes
    out = tmp_path / "state.tgz"
    cluster, members = transfer.export_state(ctl.state_dir, out)
    assert cluster == "demo" and {"secrets.yaml", "last-applied.yaml", "tls"} <= set(members)
    return ctl.state_dir, out


def test_export_then_import_gives_a_standby_the_same_secrets_and_ca(tmp_path: Path) -> None:
    origin, out = exported(tmp_path)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    target = tmp_path / "standby"
    assert main(["state", "import", str(out), "--state-dir", str(target)]) == 0
    for name in ("secrets.yaml", "last-applied.yaml", "tls/ca.crt", "tls/ca.key", "cluster-id"):
        assert (target / name).read_bytes() == (origin / name).read_bytes(), name
        assert stat.S_IMODE((target / name).stat().st_mode) == 0o600
    assert not (target / "machines").exists()  # the origin host's machines stay there
    assert StateDir(origin).may_bootstrap() and not StateDir(target).may_bootstrap()


def test_import_refuses_another_clusters_state_dir(tmp_path: Path) -> None:
    _, out = exported(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    last = (tmp_path / "state" / "last-applied.yaml").read_text()
    body = last.split("\n", 1)[1].replace("name: demo", "name: prod")
    from pgha_operator.shell.state import last_applied

    (other / "last-applied.yaml").write_text(
        f"{last_applied.HEADER}{last_applied._digest(body)}\n{body}"
    )
    before = sorted(p.name for p in other.iterdir())
    with pytest.raises(PermanentError, match="holds cluster 'prod', the archive cluster 'demo'"):
        transfer.import_state(out, other)
    assert sorted(p.name for p in other.iterdir()) == before


def test_import_refuses_members_outside_the_state_files(tmp_path: Path) -> None:
    evil = tmp_path / "evil.tgz"
    with tarfile.open(evil, "w:gz") as tar:
        for name, data in ((transfer.HEADER, b'{"cluster": "demo"}'), ("../etc/x", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    target = tmp_path / "t"
    with pytest.raises(PermanentError, match="unexpected member '../etc/x'; nothing was imported"):
        transfer.import_state(evil, target)
    assert not target.exists()


def test_import_of_something_else_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "junk.tgz"
    junk.write_bytes(b"not a tar")
    assert main(["state", "import", str(junk), "--state-dir", str(tmp_path / "t")]) == 1
    assert "cannot read the archive" in capsys.readouterr().err


def test_export_before_apply_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match="apply the cluster first"):
        transfer.export_state(tmp_path, tmp_path / "x.tgz")
