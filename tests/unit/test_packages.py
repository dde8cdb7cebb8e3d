"""What a machine gets installed, per role and Patroni source, and how: the install script
runs here against stub `systemctl` and `apt-get` commands, with policy-rc.d in a temp dir."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pgha_operator.core.topology import Role
from pgha_operator.shell.providers.nspawn_rootfs import PACKAGES
from pgha_operator.shell.providers.packages import (
    POLICY_MARK,
    install_script,
    package_units,
    packages_for,
)


def test_pypi_source_needs_the_venv_module_not_debian_patroni() -> None:
    assert packages_for([Role.POSTGRES, Role.ETCD]) == (
        "etcd-server",
        "etcd-client",
        "postgresql-15",
        "python3-venv",
    )


def test_debian_source_installs_patroni() -> None:
    assert packages_for([Role.POSTGRES], "debian") == (
        "postgresql-15",
        "patroni",
        "python3-etcd",
        "python3-idna",
    )


def test_debian_source_changes_nothing_on_machines_without_postgres() -> None:
    for roles in ([Role.ETCD], [Role.LOADBALANCER]):
        assert packages_for(roles, "debian") == packages_for(roles)


def test_only_the_units_of_packages_being_installed_are_held() -> None:
    # Never postgresql.service: stopping or masking it would stop every cluster of the host.
    assert package_units(["postgresql-15", "python3-venv", "haproxy"]) == [
        "postgresql@15-main.service",
        "haproxy.service",
    ]
    assert package_units(["etcd-client", "python3-etcd"]) == []


def test_nspawn_rootfs_holds_both_sources() -> None:
    # nspawn machines have no network: whatever a source needs must be in the rootfs.
    for source in ("pypi", "debian"):
        roles = [Role.POSTGRES, Role.ETCD, Role.LOADBALANCER]
        assert set(packages_for(roles, source)) <= set(PACKAGES)  # type: ignore[arg-type]


# --- the install script, run with stub commands -----------------------------------------------


def _stubs(tmp_path: Path, apt_exit: int) -> dict[str, str]:
    """systemctl and apt-get that log their argv; apt-get also logs what policy-rc.d says
    about starting a daemon at that moment (absent: allowed)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "log"
    policy = tmp_path / "policy-rc.d"
    (bin_dir / "systemctl").write_text(f'#!/bin/sh\necho "systemctl $*" >> {log}\n')
    (bin_dir / "apt-get").write_text(
        f'#!/bin/sh\necho "apt-get $*" >> {log}\n'
        f'if [ -x {policy} ]; then {policy} haproxy start; echo "policy $?" >> {log}; '
        f'else echo "policy none" >> {log}; fi\n'
        f'case "$1" in install) exit {apt_exit};; esac\n'
    )
    for stub in bin_dir.iterdir():
        stub.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def _run(tmp_path: Path, apt_exit: int = 0) -> tuple[int, list[str]]:
    env = _stubs(tmp_path, apt_exit)
    script = install_script(["haproxy"], ["haproxy.service"], policy=str(tmp_path / "policy-rc.d"))
    res = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True)
    return res.returncode, (tmp_path / "log").read_text().splitlines()


@pytest.mark.parametrize("apt_exit", [0, 100])
def test_install_holds_the_daemons_and_removes_its_own_policy_rc_d(
    tmp_path: Path, apt_exit: int
) -> None:
    code, log = _run(tmp_path, apt_exit)
    assert code == apt_exit  # a failed install fails, after cleaning up
    assert log[0] == "systemctl mask --runtime --quiet haproxy.service"
    assert "policy 101" in log  # no daemon starts during the install
    assert log[-1] == "systemctl unmask --runtime --quiet haproxy.service"
    assert not (tmp_path / "policy-rc.d").exists()


def test_install_leaves_a_policy_rc_d_of_the_host_exactly_as_it_was(tmp_path: Path) -> None:
    theirs = tmp_path / "policy-rc.d"
    theirs.write_text("#!/bin/sh\n# the admin's own\nexit 101\n")
    theirs.chmod(0o750)
    code, log = _run(tmp_path)
    assert code == 0
    assert theirs.read_text() == "#!/bin/sh\n# the admin's own\nexit 101\n"
    assert theirs.stat().st_mode & 0o777 == 0o750
    assert "policy 101" in log  # theirs answered
    assert log[-1] == "systemctl unmask --runtime --quiet haproxy.service"


def test_install_never_removes_a_policy_rc_d_put_there_meanwhile(tmp_path: Path) -> None:
    """Ours is removed only while it still carries our mark."""
    env = _stubs(tmp_path, 0)
    policy = tmp_path / "policy-rc.d"
    apt = tmp_path / "bin" / "apt-get"
    apt.write_text(apt.read_text() + f"printf '#!/bin/sh\\nexit 0\\n' > {policy}\n")
    script = install_script(["haproxy"], [], policy=str(policy))
    assert subprocess.run(["sh", "-c", script], env=env).returncode == 0
    assert policy.read_text() == "#!/bin/sh\nexit 0\n"
    assert POLICY_MARK.startswith("# pgha-operator")
