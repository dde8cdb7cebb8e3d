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
    # keepalived: the VIP (spec.loadBalancer.vip); Debian's unit is disabled like the others
    # and does nothing without /etc/keepalived/keepalived.conf.
    Role.LOADBALANCER: ("haproxy", "keepalived"),
}
# What a PostgreSQL machine needs for Patroni, per spec.patroni.source. pypi: the venv module
# for our pinned Patroni. debian: Debian's Patroni and the etcd client library it runs on
# (the package depends on one of several DCS libraries; apt would pick python3-etcd anyway),
# and python3-idna, which Debian's urllib3 only suggests but needs for https (etcd is TLS).
DEBIAN_PATRONI_PACKAGES = ("patroni", "python3-etcd", "python3-idna")
PATRONI_PACKAGES: dict[PatroniSource, tuple[str, ...]] = {
    "pypi": ("python3-venv",),
    "debian": DEBIAN_PATRONI_PACKAGES,
}
# Debian's patroni package enables its own patroni.service (it starts once
# /etc/patroni/config.yml exists); the operator runs Patroni under its own unit.
DEBIAN_PATRONI_UNITS = ("patroni.service",)
# The units a package brings that would start a daemon of its own when installed: held
# (masked for the length of the install, --runtime) and then disabled, but only for packages
# the operator itself installs. A unit of a package that was already there is the host's:
# never stopped, masked or disabled.
PACKAGE_UNITS: dict[str, tuple[str, ...]] = {
    "etcd-server": ("etcd.service",),
    "haproxy": ("haproxy.service",),
    "keepalived": ("keepalived.service",),
    "postgresql-15": ("postgresql@15-main.service",),
    "patroni": DEBIAN_PATRONI_UNITS,
}
APT_TIMEOUT = 900.0
PIP_TIMEOUT = 900.0
# invoke-rc.d and deb-systemd-invoke ask it whether a package may start or restart a daemon
# (exit 101: no). One the host already has is left exactly as it is; otherwise the operator
# puts its own there for the length of the install (so a dependency upgraded on the way does
# not restart a daemon of the host either) and removes it after, if it is still its own.
POLICY_RC_D = "/usr/sbin/policy-rc.d"
POLICY_MARK = "# pgha-operator: no daemon starts or restarts while it installs packages"
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


def package_units(packages: Iterable[str]) -> list[str]:
    """The Debian units of `packages` that would start a daemon of their own."""
    return [u for p in packages for u in PACKAGE_UNITS.get(p, ())]


def install_script(packages: Iterable[str], hold: Iterable[str], policy: str = POLICY_RC_D) -> str:
    """The shell script that installs `packages` with no daemon started: the units in `hold`
    masked --runtime until it ends (whatever happens), and a policy-rc.d of its own only
    where the host has none (removed after, if it is still its own)."""
    return f"""set -e
P={shlex.quote(policy)}; M={shlex.quote(POLICY_MARK)}; H={shlex.quote(" ".join(hold))}; ours=
cleanup() {{
  if [ -n "$H" ]; then systemctl unmask --runtime --quiet $H || true; fi
  if [ -n "$ours" ] && grep -qxF "$M" "$P"; then rm -f "$P"; fi
}}
trap cleanup EXIT
if [ ! -e "$P" ] && [ ! -L "$P" ]; then
  printf '#!/bin/sh\\n%s\\nexit 101\\n' "$M" > "$P"; chmod 755 "$P"; ours=1
fi
if [ -n "$H" ]; then systemctl mask --runtime --quiet $H; fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold {shlex.join(packages)}
"""


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
    script = install_script(missing, package_units(missing))
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


def disable_units(host: Host, units: list[str]) -> list[str]:
    """Disable the units of packages the operator installed, so that a reboot does not start
    Debian's own etcd/haproxy/PostgreSQL beside the operator's; returns those disabled."""
    if not units:
        return []
    res = host.run(["systemctl", "is-enabled", *units], check=False)
    answers = res.stdout.split()
    if len(answers) != len(units):  # one unit unknown: ask one by one
        answers = [
            host.run(["systemctl", "is-enabled", u], check=False).stdout.strip() for u in units
        ]
    todo = [u for u, state in zip(units, answers, strict=True) if state == "enabled"]
    if todo:
        host.run(["systemctl", "disable", "--quiet", *todo])
    return todo


@dataclass(frozen=True)
class Prepared:
    """What prepare_machine changed on a machine (the ssh provider undoes exactly that)."""

    installed: tuple[str, ...]  # Debian packages apt installed
    disabled: tuple[str, ...]  # the units of those packages, disabled
    patroni_installed: bool  # the Patroni venv was created or upgraded


def prepare_machine(
    host: Host,
    machine: Machine,
    layout: Layout,
    service_user: str,
    patroni_source: PatroniSource = "pypi",
) -> Prepared:
    """Packages, Patroni (our venv, or Debian's package) and the directories the services
    need. Nothing of what the host had is stopped, masked or disabled."""
    installed = ensure_packages(host, packages_for(machine.roles, patroni_source))
    disabled = disable_units(host, package_units(installed))
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
    return Prepared(tuple(installed), tuple(disabled), patroni)
