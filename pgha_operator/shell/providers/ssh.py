"""The `ssh` provider: existing Debian 12 hosts named in the manifest. The operator never
creates or destroys them, and never takes them over: everything of a cluster lives in its
own `pgha` directories (/etc/pgha/<cluster>, /var/lib/pgha/<cluster>, /run/pgha/<cluster>)
and units (pgha-<cluster>-*.service); the host's own PostgreSQL clusters, HAProxy, etcd and
their files are never stopped, masked or written. It installs only the packages a host
misses (with no daemon started), and on `destroy` removes only what it created, saying what
it left.

Host keys come from the known_hosts file the manifest names; an unknown or changed key is
refused. A host belongs to the cluster once /etc/pgha/<cluster>/owner.json records the
cluster's identity (host_owner.py); a host of another identity, or one where a port or path
the cluster needs is taken, is refused with the reason.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import structlog

from pgha_operator.core import topology
from pgha_operator.core.errors import PermanentError
from pgha_operator.core.facts.observed import MachineFact
from pgha_operator.core.render import Binaries
from pgha_operator.core.render.services import SYSTEMD_UNIT_DIR, unit_name
from pgha_operator.core.spec import Cluster, SshProviderSpec
from pgha_operator.core.topology import Layout, Machine, Topology, host_dirs
from pgha_operator.shell.hosts.base import HostError
from pgha_operator.shell.hosts.ssh import SshHost, SshTarget
from pgha_operator.shell.providers.base import ProviderBase
from pgha_operator.shell.providers.host_owner import (
    HostRefused,
    Owner,
    check_claims,
    identity_problem,
    owner_path,
    read_owner,
)
from pgha_operator.shell.providers.packages import (
    PATRONI_VENV,
    patroni_version,
    prepare_machine,
)
from pgha_operator.shell.state.identity import ensure_cluster_id, read_cluster_id

log = structlog.get_logger("pgha-operator")
# stop order: the VIP first (a peer takes it over), the router, the DCS last
SERVICES = ("keepalived", "haproxy", "pgbouncer", "patroni", "etcd")
# The host's own daemons of the kinds the operator runs: named in what destroy says it left.
FOREIGN_UNITS = ("postgresql*", "haproxy*", "etcd*", "patroni*")
PARENT_DIRS = tuple(d.rsplit("/", 1)[0] for d in host_dirs("x"))  # /etc/pgha, ...


class SshProvider(ProviderBase):
    """No capability: the operator cannot pull a real server's power (no fencing, no
    crash drills), nor see the machine from outside it."""

    kind = "ssh"
    service_manager: Literal["local", "systemd"] = "systemd"
    service_user: str | None = "postgres"

    def __init__(
        self, cluster: Cluster, state_dir: Path, port: int = 22, topo: Topology | None = None
    ) -> None:
        spec = cluster.spec.provider
        if not isinstance(spec, SshProviderSpec):
            raise TypeError("SshProvider needs a manifest with provider type ssh")
        self.cluster = cluster
        self.spec = spec
        self.binaries = Binaries().for_patroni_source(cluster.spec.patroni.source)
        self.state_dir = state_dir
        self.port = port
        self.topology = topo or topology.build(cluster)  # the controller passes its own
        self.key_file = os.path.expanduser(spec.key_file)
        self.known_hosts = os.path.expanduser(spec.known_hosts)
        self._hosts: dict[str, SshHost] = {}

    def follow(self, cluster: Cluster, topo: Topology) -> None:
        """A scaled manifest: new machines are found in its topology."""
        self.cluster, self.topology = cluster, topo

    def preflight(self) -> None:
        if not os.path.isfile(self.key_file):
            raise PermanentError(f"spec.provider.keyFile: {self.key_file} does not exist")
        if not os.path.isfile(self.known_hosts):
            raise PermanentError(
                f"spec.provider.knownHosts: {self.known_hosts} does not exist; it must pin "
                "the host key of every machine (e.g. ssh-keyscan, checked by hand)"
            )
        self.state_dir.mkdir(parents=True, exist_ok=True)

    def layout(self, name: str) -> Layout:
        return topology.layout("/", self.cluster.name)

    def host(self, name: str) -> SshHost:
        if name not in self._hosts:
            self._hosts[name] = SshHost(
                SshTarget(
                    name=name,
                    address=self.topology.address(name),
                    port=self.port,
                    user=self.spec.user,
                    key_file=self.key_file,
                    known_hosts=self.known_hosts,
                ),
                cluster=self.cluster.name,
            )
        return self._hosts[name]

    def _owner(self, name: str) -> Owner | None:
        return read_owner(self.host(name), self.cluster.name)

    def _local_record(self, name: str) -> Path:
        """Which hosts this operator prepared: known without dialling anything."""
        return self.state_dir / "hosts" / name

    def machines(self) -> list[MachineFact]:
        facts = []
        cluster_id = read_cluster_id(self.state_dir)
        for m in self.topology.machines:
            if not self._local_record(m.name).exists():
                continue  # never prepared by us: not a machine of this cluster yet
            try:
                owner = self._owner(m.name)
            except HostError:
                owner = None  # unreachable: create() will say why
            except HostRefused as e:
                facts.append(MachineFact(m.name, False, m.address, error=str(e)))
                continue
            problem = None if owner is None else identity_problem(m.name, owner, cluster_id)
            usable = owner is not None and problem is None
            facts.append(MachineFact(m.name, usable, m.address, error=problem))
        return facts

    def create(self, machine: Machine) -> None:
        """Prepare an existing host: claim it (refused when it is another identity's, or
        when a port or path the cluster needs is taken), then packages, Patroni and the
        directories; the owner record says what was changed so destroy can undo exactly that."""
        self.preflight()
        cluster_id = ensure_cluster_id(self.state_dir)
        host = self.host(machine.name)
        owner = self._owner(machine.name)
        if owner is None:
            check_claims(host, self.cluster, machine)
            owner = Owner(self.cluster.name, cluster_id)
            self._save(machine.name, owner)  # ours from now on, even if preparing fails
        elif problem := identity_problem(machine.name, owner, cluster_id):
            raise HostRefused(problem)
        had_venv = patroni_version(host) is not None
        done = prepare_machine(
            host, machine, self.layout(machine.name), "postgres", self.binaries.patroni_source
        )
        venv = PATRONI_VENV if done.patroni_installed and not had_venv else None
        self._save(machine.name, owner.merged(done.installed, done.disabled, venv))
        self._local_record(machine.name).parent.mkdir(parents=True, exist_ok=True)
        self._local_record(machine.name).write_text(f"{machine.address}\n")

    def _save(self, name: str, owner: Owner) -> None:
        host = self.host(name)
        host.run(["install", "-d", "-m", "0755", host_dirs(self.cluster.name)[0]])
        host.write(owner_path(self.cluster.name), owner.to_json())

    def destroy(self, name: str) -> list[str]:
        """Remove what the operator created (its units, its directories, the Patroni venv it
        made when no other cluster uses it); the host, its packages and its own services
        stay. Returns what was left, in words."""
        host = self.host(name)
        owner = self._owner(name)
        if owner is None:
            self._local_record(name).unlink(missing_ok=True)
            return []
        if problem := identity_problem(name, owner, read_cluster_id(self.state_dir)):
            raise HostRefused(problem)
        for service in SERVICES:
            host.service(service).disable()
            host.remove(f"{SYSTEMD_UNIT_DIR}/{unit_name(self.cluster.name, service)}")
        host.run(["systemctl", "daemon-reload"])
        for path in host_dirs(self.cluster.name):
            host.remove(path)
        # Parents shared by every cluster: removed only once empty.
        host.run(["rmdir", "--ignore-fail-on-non-empty", *PARENT_DIRS], check=False)
        left = self._left(host, owner)
        self._local_record(name).unlink(missing_ok=True)
        host.close()
        self._hosts.pop(name, None)
        log.info("host left", machine=name, left=left)
        return left

    def _left(self, host: SshHost, owner: Owner) -> list[str]:
        """Remove the venv when no cluster is left on the host; say what stays."""
        left = []
        others = host.run(["test", "-d", "/etc/pgha"], check=False).ok
        if owner.patroni_venv and not others:
            host.remove(owner.patroni_venv)
            host.run(["rmdir", "--ignore-fail-on-non-empty", "/opt/pgha-operator"], check=False)
        elif owner.patroni_venv:
            left.append(f"the Patroni venv {owner.patroni_venv} (other clusters use it)")
        if owner.installed:
            left.append(
                f"packages installed for the cluster: {' '.join(owner.installed)} "
                "(apt-get remove them if nothing else needs them)"
            )
        if owner.disabled:
            left.append(f"their units, disabled: {' '.join(owner.disabled)}")
        res = host.run(
            [
                "systemctl",
                "list-units",
                "--type=service",
                "--state=active",
                "--no-legend",
                "--plain",
                *FOREIGN_UNITS,
            ],  # fmt: skip
            check=False,
        )
        running = [line.split()[0] for line in res.stdout.splitlines() if line.strip()]
        if running:
            left.append(f"the host's own services, untouched and running: {' '.join(running)}")
        return left
