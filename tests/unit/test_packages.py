"""What a machine gets installed and masked, per role and Patroni source. Pure."""

from __future__ import annotations

from pgha_operator.core.topology import Role
from pgha_operator.shell.providers.nspawn_rootfs import MASKED_UNITS, PACKAGES
from pgha_operator.shell.providers.packages import packages_for, units_to_mask


def test_pypi_source_needs_the_venv_module_not_debian_patroni() -> None:
    assert packages_for([Role.POSTGRES, Role.ETCD]) == (
        "etcd-server",
        "etcd-client",
        "postgresql-15",
        "python3-venv",
    )
    assert units_to_mask([Role.POSTGRES]) == ["postgresql.service"]


def test_debian_source_installs_patroni_and_masks_its_unit() -> None:
    wanted = packages_for([Role.POSTGRES], "debian")
    assert wanted == ("postgresql-15", "patroni", "python3-etcd")
    assert units_to_mask([Role.POSTGRES], "debian") == ["postgresql.service", "patroni.service"]


def test_debian_source_changes_nothing_on_machines_without_postgres() -> None:
    for roles in ([Role.ETCD], [Role.LOADBALANCER]):
        assert packages_for(roles, "debian") == packages_for(roles)
        assert units_to_mask(roles, "debian") == units_to_mask(roles)


def test_nspawn_rootfs_holds_both_sources() -> None:
    # nspawn machines have no network: whatever a source needs must be in the rootfs.
    for source in ("pypi", "debian"):
        roles = [Role.POSTGRES, Role.ETCD, Role.LOADBALANCER]
        assert set(packages_for(roles, source)) <= set(PACKAGES)  # type: ignore[arg-type]
        assert set(units_to_mask(roles, source)) <= set(MASKED_UNITS)  # type: ignore[arg-type]
