"""The `ssh` provider: existing Debian 12 hosts named in the manifest. The operator never
creates or destroys them; it installs what they miss (packages, Patroni's venv), runs its
services there, and on `destroy` removes only what it put there.

Host keys come from the known_hosts file the manifest names; an unknown or changed key
is refused. A host counts as a machine of the cluster once the operator prepared it (a
marker, /etc/pgha-operator/<cluster>.json, lists what it installed).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pgha_operator.core import topology
from pgha_operator.core.errors import PermanentError
from pgha_operator.core.facts.observed import MachineFact
from pgha_operator.core.render import Binaries
from pgha_operator.core.render.services import SYSTEMD_UNIT_DIR, unit_name
from pgha_operator.core.spec import Cluster, SshProviderSpec
from pgha_operator.core.topology import Layout, Machine, Topology
from pgha_operator.shell.hosts.base import HostError
from pgha_operator.shell.hosts.ssh import SshHost, SshTarget
from pgha_operator.shell.providers.base import ProviderBase
from pgha_operator.shell.providers.packages import (
    PATRONI_VENV,
    patroni_version,
    prepare_machine,
)

MARKER_DIR = "/etc/pgha-operator"
SERVICES = ("haproxy", "patroni", "etcd")  # stop order: the router first, the DCS last


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

    @property
    def marker(self) -> str:
        return f"{MARKER_DIR}/{self.cluster.name}.json"

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
                )
            )
        return self._hosts[name]

    def _record(self, name: str) -> dict[str, object] | None:
        raw = self.host(name).read(self.marker)
        return None if raw is None else json.loads(raw)

    def _local_record(self, name: str) -> Path:
        """Which hosts this operator prepared: known without dialling anything."""
        return self.state_dir / "hosts" / name

    def machines(self) -> list[MachineFact]:
        facts = []
        for m in self.topology.machines:
            if not self._local_record(m.name).exists():
                continue  # never prepared by us: not a machine of this cluster yet
            try:
                prepared = self._record(m.name) is not None
            except HostError:
                prepared = False  # unreachable: create() will say why
            facts.append(MachineFact(m.name, prepared, m.address))
        return facts

    def create(self, machine: Machine) -> None:
        """Prepare an existing host: packages, Patroni, directories; then mark it ours,
        recording what was changed so destroy can undo exactly that."""
        self.preflight()
        host = self.host(machine.name)
        record = self._record(machine.name) or {"cluster": self.cluster.name}
        had_venv = patroni_version(host) is not None
        done = prepare_machine(
            host, machine, self.layout(machine.name), "postgres", self.binaries.patroni_source
        )
        record["installed"] = sorted({*_strings(record, "installed"), *done.installed})
        record["masked"] = sorted({*_strings(record, "masked"), *done.masked})
        if done.patroni_installed and not had_venv:
            record["patroni_venv"] = PATRONI_VENV
        host.write(self.marker, (json.dumps(record, indent=2) + "\n").encode())
        self._local_record(machine.name).parent.mkdir(parents=True, exist_ok=True)
        self._local_record(machine.name).write_text(f"{machine.address}\n")

    def destroy(self, name: str) -> None:
        """Remove what the operator installed; the host itself stays."""
        host = self.host(name)
        record = self._record(name)
        if record is None:
            self._local_record(name).unlink(missing_ok=True)
            return
        for service in SERVICES:
            host.service(service).disable()
            host.remove(f"{SYSTEMD_UNIT_DIR}/{unit_name(service)}")
        host.run(["systemctl", "daemon-reload"])
        lay = self.layout(name)
        for path in (lay.patroni_config, lay.etcd_config, lay.pg_data, lay.etcd_data, lay.pgpass):
            host.remove(path)
        masked = _strings(record, "masked")
        if masked:
            host.run(["systemctl", "unmask", *masked], check=False)
        if record.get("patroni_venv"):
            host.remove(str(record["patroni_venv"]))
        installed = _strings(record, "installed")
        if installed:
            host.run(
                [
                    "sh",
                    "-c",
                    'DEBIAN_FRONTEND=noninteractive apt-get remove -y -q "$@"',
                    "sh",
                    *installed,
                ],
                timeout=900,
            )
        host.remove(self.marker)
        self._local_record(name).unlink(missing_ok=True)
        host.close()
        self._hosts.pop(name, None)


def _strings(record: dict[str, object], key: str) -> list[str]:
    """A list of names in the host's record ([] when absent or not a list)."""
    value = record.get(key)
    return [str(v) for v in value] if isinstance(value, list) else []
