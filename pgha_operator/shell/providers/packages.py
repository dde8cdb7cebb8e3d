"""What a machine needs installed before the operator can run its services there.

Idempotent: a machine that already has everything is only asked (dpkg-query, the venv's
Patroni version), so no network is needed; only what is missing is installed.
"""

from __future__ import annotations

import importlib.metadata
import shlex
from collections.abc import Iterable
from dataclasses import dataclass

from pgha_operator.core.errors import PermanentError
from pgha_operator.core.render.context import PatroniSource
from pgha_operator.core.topology import Layout, Machine, Role
from pgha_operator.shell.hosts.base import Host

PATRONI_VENV = "/opt/pgha-operator/patroni"
PYTHON = "/usr/bin/python3"  # Debian's: the postgres user must be able to run the venv

ROLE_PACKAGES: dict[Role, tuple[str, ...]] = {
    Role.ETCD: ("etcd-server", "etcd-client"),
    Role.POSTGRES: ("postgresql-15",),
    Role.LOADBALANCER: ("haproxy",),
}
# What a PostgreSQL machine needs for Patroni, per spec.patroni.source. pypi: the venv module
# for our pinned Patroni. debian: Debian's Patroni and the etcd client library it runs on
# (the package depends on one of several DCS libraries; apt would pick python3-etcd anyway).
DEBIAN_PATRONI_PACKAGES = ("patroni", "python3-etcd")
PATRONI_PACKAGES: dict[PatroniSource, tuple[str, ...]] = {
    "pypi": ("python3-venv",),
    "debian": DEBIAN_PATRONI_PACKAGES,
}
# Debian's own units for the daemons the operator runs under pgha-*.service units.
DEBIAN_UNITS: dict[Role, tuple[str, ...]] = {
    Role.ETCD: ("etcd.service",),
    Role.POSTGRES: ("postgresql.service",),
    Role.LOADBALANCER: ("haproxy.service",),
}
# Debian's patroni package enables its own patroni.service (it starts once
# /etc/patroni/config.yml exists); the operator runs Patroni as pgha-patroni.service.
DEBIAN_PATRONI_UNITS = ("patroni.service",)
APT_TIMEOUT = 900.0
PIP_TIMEOUT = 900.0
# Makes invoke-rc.d refuse to start services while apt installs them (Debian's policy-rc.d).
POLICY_RC_D = "/usr/sbin/policy-rc.d"
MAIN_CLUSTER = "/etc/postgresql/15/main"


def patroni_requirements() -> tuple[str, ...]:
    """Patroni pinned to the version the operator itself was built and tested with."""
    return (
        f"patroni[etcd3]=={importlib.metadata.version('patroni')}",
        f"psycopg[binary]=={importlib.metadata.version('psycopg')}",
    )


def packages_for(roles: Iterable[Role], patroni_source: PatroniSource = "pypi") -> tuple[str, ...]:
    wanted: list[str] = []
    for role in sorted(roles):
        wanted += [p for p in ROLE_PACKAGES[role] if p not in wanted]
        if role == Role.POSTGRES:
            wanted += PATRONI_PACKAGES[patroni_source]
    return tuple(wanted)


def units_to_mask(roles: Iterable[Role], patroni_source: PatroniSource = "pypi") -> list[str]:
    roles = sorted(roles)
    units = [u for role in roles for u in DEBIAN_UNITS[role]]
    if Role.POSTGRES in roles and patroni_source == "debian":
        units += DEBIAN_PATRONI_UNITS
    return units


def missing_packages(host: Host, packages: Iterable[str]) -> list[str]:
    packages = list(packages)
    res = host.run(
        ["dpkg-query", "-W", "-f=${Package} ${db:Status-Abbrev}\\n", *packages], check=False
    )
    installed = {
        line.split()[0]
        for line in res.stdout.splitlines()
        if len(line.split()) >= 2 and line.split()[1].startswith("ii")
    }
    return [p for p in packages if p not in installed]


def ensure_packages(host: Host, packages: Iterable[str]) -> list[str]:
    """apt-get install what is missing (services not started by the install); returns what
    was installed."""
    missing = missing_packages(host, packages)
    if not missing:
        return []
    # Debian makes (and would start) a cluster 15/main on install; Patroni owns PostgreSQL
    # here, so a main cluster that this very install created is dropped again.
    had_main = host.run(["test", "-e", MAIN_CLUSTER], check=False).ok
    script = (
        f"set -e; printf '#!/bin/sh\\nexit 101\\n' > {POLICY_RC_D}; chmod 755 {POLICY_RC_D}; "
        f"trap 'rm -f {POLICY_RC_D}' EXIT; "
        "export DEBIAN_FRONTEND=noninteractive; apt-get update -q; "
        "apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold "
        + shlex.join(missing)
    )
    host.run(["sh", "-c", script], timeout=APT_TIMEOUT)
    drop_main = "postgresql-15" in missing and not had_main
    if drop_main and host.run(["test", "-e", MAIN_CLUSTER], check=False).ok:
        host.run(["pg_dropcluster", "--stop", "15", "main"], timeout=120)
    still = missing_packages(host, missing)
    if still:
        raise PermanentError(f"{host.name}: apt-get did not install {', '.join(still)}")
    return missing


def patroni_version(host: Host) -> str | None:
    res = host.run(
        [
            f"{PATRONI_VENV}/bin/python",
            "-c",
            "import importlib.metadata as m; print(m.version('patroni'))",
        ],
        check=False,
    )
    return res.stdout.strip() if res.ok else None


def ensure_patroni(host: Host) -> bool:
    """Patroni in its venv under /opt at our pinned version; True when (re)installed."""
    requirements = patroni_requirements()
    wanted = requirements[0].split("==", 1)[1]
    if patroni_version(host) == wanted:
        return False
    if not host.run(["test", "-x", f"{PATRONI_VENV}/bin/pip"], check=False).ok:
        host.run([PYTHON, "-m", "venv", PATRONI_VENV], timeout=PIP_TIMEOUT)
    host.run([f"{PATRONI_VENV}/bin/pip", "install", "-q", *requirements], timeout=PIP_TIMEOUT)
    host.run(["chmod", "-R", "a+rX", "/opt/pgha-operator"])
    got = patroni_version(host)
    if got != wanted:
        raise PermanentError(f"{host.name}: Patroni {wanted} wanted in {PATRONI_VENV}, got {got}")
    return True


def mask_debian_units(host: Host, units: list[str]) -> list[str]:
    """Debian's etcd/haproxy/postgresql(/patroni) units would bind our ports or read our
    files: stop and mask them. Returns the units this call masked (not those already masked)."""
    if not units:
        return []
    res = host.run(["systemctl", "is-enabled", *units], check=False)
    answers = res.stdout.split()
    if len(answers) != len(units):  # an error for one unit: ask one by one
        answers = [
            host.run(["systemctl", "is-enabled", u], check=False).stdout.strip() for u in units
        ]
    todo = [u for u, state in zip(units, answers, strict=True) if state != "masked"]
    if todo:
        host.run(["systemctl", "stop", *todo], check=False, timeout=120)
        host.run(["systemctl", "mask", *todo])
    return todo


@dataclass(frozen=True)
class Prepared:
    """What prepare_machine changed on a machine (the ssh provider undoes exactly that)."""

    installed: tuple[str, ...]  # Debian packages apt installed
    masked: tuple[str, ...]  # Debian units masked
    patroni_installed: bool  # the Patroni venv was created or upgraded


def prepare_machine(
    host: Host,
    machine: Machine,
    layout: Layout,
    service_user: str,
    patroni_source: PatroniSource = "pypi",
) -> Prepared:
    """Packages, Patroni (our venv, or Debian's package) and the directories the services
    need."""
    installed = ensure_packages(host, packages_for(machine.roles, patroni_source))
    masked = mask_debian_units(host, units_to_mask(machine.roles, patroni_source))
    patroni = False
    if machine.has(Role.POSTGRES):
        if patroni_source == "pypi":
            patroni = ensure_patroni(host)
        # Patroni's working directory and initdb's parent (data_dir itself is initdb's).
        pg_parent = layout.pg_data.rstrip("/").rsplit("/", 1)[0]
        host.run(["install", "-d", "-o", service_user, "-g", service_user, "-m", "0755", pg_parent])
    if machine.has(Role.ETCD):
        etcd_parent = layout.etcd_data.rstrip("/").rsplit("/", 1)[0]
        host.run(["install", "-d", "-m", "0755", etcd_parent])
    return Prepared(tuple(installed), tuple(masked), patroni)
