"""The `vagrant` provider: VMs made by `vagrant up VM` from the machine list the operator
writes (read by the top-level Vagrantfile), reached over SSH with the details
`vagrant ssh-config VM` prints.

Each cluster has its own Vagrant work dir, <state>/vagrant-work (the machine list and
Vagrant's own data, VAGRANT_DOTFILE_PATH), and its VMs are named <cluster>-<machine>: no
vagrant command of one cluster can reach another's VM. Inside, a VM's hostname is the
manifest's machine name (node1, ...), as in the seed.

Host keys are pinned, not trusted on first use: the operator generates each VM's ed25519
host key, the Vagrantfile's provisioner installs it on the first `vagrant up`, and the
operator records it in <state>/known_hosts. (Vagrant's own ssh-config turns host key
checking off; the operator never does.)
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Literal

import structlog

from pgha_operator.core import topology
from pgha_operator.core.errors import PermanentError, TemporaryError
from pgha_operator.core.facts.observed import MachineFact
from pgha_operator.core.facts.types import MachineState
from pgha_operator.core.render import TEMPLATES_DIR, Binaries
from pgha_operator.core.spec import Cluster, VagrantProviderSpec
from pgha_operator.core.topology import Layout, Machine, Topology
from pgha_operator.shell.hosts.ssh import SshHost, SshTarget, SshUnreachable
from pgha_operator.shell.providers import vagrant_docker as vd
from pgha_operator.shell.providers.base import (
    Fencing,
    MachineStates,
    ProviderBase,
    booted_machine_state,
)
from pgha_operator.shell.providers.packages import prepare_machine
from pgha_operator.shell.providers.sshkeys import (
    ensure_client_key,
    generate_host_key,
    pin_host_key,
    unpin_host_key,
)
from pgha_operator.shell.providers.vagrant_output import (  # noqa: F401 (re-exported)
    SshConfig,
    parse_ssh_config,
    parse_status,
)

log = structlog.get_logger("pgha-operator")

PROJECT_DIR = TEMPLATES_DIR.parent  # where the Vagrantfile is
WORK_DIR = "vagrant-work"  # under the cluster's state dir: machines.json, Vagrant's dot dir
UP_TIMEOUT = 1800.0  # the first `vagrant up` downloads the box
CMD_TIMEOUT = 300.0
SSH_WAIT = 120.0
STATUS_TRIES = 3


class VagrantProvider(ProviderBase, Fencing, MachineStates):
    """Fencing: `vagrant halt --force` pulls the VM's power."""

    kind = "vagrant"
    service_manager: Literal["local", "systemd"] = "systemd"
    service_user: str | None = "postgres"

    def __init__(
        self,
        cluster: Cluster,
        state_dir: Path,
        project_dir: Path = PROJECT_DIR,
        work_dir: Path | None = None,
        topo: Topology | None = None,
    ) -> None:
        spec = cluster.spec.provider
        if not isinstance(spec, VagrantProviderSpec):
            raise TypeError("VagrantProvider needs a manifest with provider type vagrant")
        self.cluster = cluster
        self.spec = spec
        self.binaries = Binaries().for_patroni_source(cluster.spec.patroni.source)
        self.state_dir = state_dir
        self.project_dir = project_dir
        self.topology = topo or topology.build(cluster)  # the controller passes its own
        self.work_dir = work_dir or state_dir / WORK_DIR
        self.machines_file = self.work_dir / "machines.json"
        self.known_hosts = state_dir / "known_hosts"
        self.vm_dir = state_dir / "vagrant"
        # vmProvider docker: the operator's own key, the cluster's internal network.
        self.docker = spec.vm_provider == "docker"
        self.key_file = state_dir / "ssh" / "id_ed25519"
        self.docker_network = f"pgha-{cluster.name}"
        self._hosts: dict[str, SshHost] = {}

    # --- vagrant ------------------------------------------------------------------------------

    def follow(self, cluster: Cluster, topo: Topology) -> None:
        """A scaled manifest: new machines are found in its topology."""
        self.cluster, self.topology = cluster, topo

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "VAGRANT_CWD": str(self.project_dir),
            "PGHA_VAGRANT_MACHINES": str(self.machines_file),
            # Vagrant's own state (VM ids, its SSH keys) beside the list, not in the checkout.
            "VAGRANT_DOTFILE_PATH": str(self.work_dir / "dot"),
            "VAGRANT_DEFAULT_PROVIDER": self.spec.vm_provider,
            # No calls home (version checks) from a tool the operator runs on a loop.
            "VAGRANT_CHECKPOINT_DISABLE": "1",
            "VAGRANT_NO_COLOR": "1",
        }

    def vagrant(
        self, *args: str, timeout: float = CMD_TIMEOUT, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = ["vagrant", *args]
        try:
            res = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=self.env(),
                cwd=self.project_dir,
                stdin=subprocess.DEVNULL,
            )
        except FileNotFoundError:
            raise PermanentError(
                "vagrant not found: install Vagrant (and VirtualBox or vagrant-libvirt)"
            ) from None
        except subprocess.TimeoutExpired:
            raise PermanentError(f"{shlex.join(argv)} timed out after {timeout:.0f} s") from None
        if check and res.returncode != 0:
            raise PermanentError(
                f"{shlex.join(argv)} failed (exit {res.returncode}): "
                + "\n".join((res.stderr or res.stdout).strip().splitlines()[-15:])
            )
        return res

    def preflight(self) -> None:
        if not shutil.which("vagrant"):
            raise PermanentError(
                "vagrant not found: install Vagrant and VirtualBox (see docs/machines.md)"
            )
        if not (self.project_dir / "Vagrantfile").exists():
            raise PermanentError(f"no Vagrantfile in {self.project_dir}")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self.docker:
            vd.preflight()

    # --- the machine list ---------------------------------------------------------------------

    def vm_name(self, name: str) -> str:
        """Vagrant's name of a machine: prefixed by the cluster, unique on this host."""
        return f"{self.cluster.name}-{name}"

    def _host_key(self, name: str) -> Path:
        return self.vm_dir / name / "ssh_host_ed25519_key"

    def created(self) -> list[str]:
        """Machines this operator has brought up (and not destroyed)."""
        if not self.vm_dir.is_dir():
            return []
        return sorted(d.name for d in self.vm_dir.iterdir() if (d / "created").exists())

    def machine_list(self) -> dict[str, object]:
        """What the Vagrantfile reads: the manifest's machines, and any still created."""
        names = [m.name for m in self.topology.machines]
        names += [n for n in self.created() if n not in names]
        machines = []
        for name in names:
            try:
                address = self.topology.address(name)
            except KeyError:
                address = json.loads((self.vm_dir / name / "created").read_text())["address"]
            machines.append(
                {
                    "name": self.vm_name(name),
                    "hostname": name,
                    "address": address,
                    "host_key": str(self._host_key(name)),
                }
            )
        listing: dict[str, object] = {
            "cluster": self.cluster.name,
            "box": self.spec.box,
            "box_version": self.spec.box_version,
            "provider": self.spec.vm_provider,
            "memory": self.spec.memory,
            "cpus": self.spec.cpus,
            "machines": machines,
        }
        if self.docker:
            listing |= {
                "image": vd.image_tag(),
                "docker_network": self.docker_network,
                "docker_run_args": list(vd.RUN_ARGS),
                "client_key": str(self.key_file),
            }
        return listing

    def write_machine_list(self) -> Path:
        self.machines_file.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.machine_list(), indent=2) + "\n"
        if not self.machines_file.exists() or self.machines_file.read_text() != text:
            tmp = self.machines_file.with_suffix(".tmp")
            tmp.write_text(text)
            os.replace(tmp, self.machines_file)
        return self.machines_file

    # --- Provider port ------------------------------------------------------------------------

    def layout(self, name: str) -> Layout:
        return topology.layout("/", self.cluster.name)

    def machines(self) -> list[MachineFact]:
        created = self.created()
        if not created:
            return []  # nothing made yet: no need to ask vagrant (slow, and maybe absent)
        self.write_machine_list()
        for _ in range(STATUS_TRIES):  # another vagrant call may hold a machine's lock
            res = self.vagrant("status", "--machine-readable", check=False)
            if res.returncode == 0:
                break
            time.sleep(1.0)
        if res.returncode != 0:
            # e.g. "the machine is locked" by another vagrant call: no answer is not "down"
            # (reading it so would create running machines again).
            raise TemporaryError(
                "vagrant status failed: " + "\n".join(res.stderr.strip().splitlines()[-3:])
            )
        states = parse_status(res.stdout)
        facts = []
        for name in created:
            meta = json.loads((self.vm_dir / name / "created").read_text())
            up = states.get(self.vm_name(name)) == "running"
            facts.append(MachineFact(name, up, meta.get("address")))
        return facts

    def create(self, machine: Machine) -> None:
        self.preflight()
        key = self._host_key(machine.name)
        if not key.exists():
            generate_host_key(key, comment=machine.name)
        if self.docker:
            self._docker_prerequisites()
        self.write_machine_list()
        log.info("vagrant up", machine=machine.name, provider=self.spec.vm_provider)
        self.vagrant(
            "up",
            self.vm_name(machine.name),
            f"--provider={self.spec.vm_provider}",
            timeout=UP_TIMEOUT,
        )
        (self.vm_dir / machine.name / "created").write_text(
            json.dumps({"address": machine.address}) + "\n"
        )
        if self.docker:  # no Vagrant SSH: the manifest's address, the operator's key
            pin_host_key(self.known_hosts, machine.address, key.with_suffix(".pub").read_text())
            self._hosts.pop(machine.name, None)
            host = self.host(machine.name)
            _wait_for(host, SSH_WAIT)
            host.run(["systemctl", "is-system-running", "--wait"], check=False, timeout=SSH_WAIT)
        else:
            config = self._refresh_ssh_config(machine.name)
            pin_host_key(
                self.known_hosts, config.hostname, key.with_suffix(".pub").read_text(), config.port
            )
            host = self.host(machine.name)
            _wait_for(host, SSH_WAIT)
        prepare_machine(
            host, machine, self.layout(machine.name), "postgres", self.binaries.patroni_source
        )

    def _docker_prerequisites(self) -> None:
        """The box (imported once), the cluster's internal network, the operator's key."""
        vd.ensure_image(self.spec.rootfs_cache, self.state_dir / "rootfs-build.log")
        taken = [m.address for m in self.topology.machines]
        network = self.spec.network
        vd.ensure_network(self.docker_network, network, vd.gateway(network, taken))
        ensure_client_key(self.key_file)

    def _refresh_ssh_config(self, name: str) -> SshConfig:
        vm = self.vm_name(name)
        configs = parse_ssh_config(self.vagrant("ssh-config", vm).stdout)
        if vm not in configs:
            raise PermanentError(f"vagrant ssh-config {vm} printed no Host {vm} block")
        config = configs[vm]
        (self.vm_dir / name / "ssh.json").write_text(json.dumps(config.__dict__) + "\n")
        self._hosts.pop(name, None)
        return config

    def _ssh_config(self, name: str) -> SshConfig:
        path = self.vm_dir / name / "ssh.json"
        if path.exists():
            return SshConfig(**json.loads(path.read_text()))
        return self._refresh_ssh_config(name)

    def host(self, name: str) -> SshHost:
        if name not in self._hosts and self.docker:
            self._hosts[name] = SshHost(
                SshTarget(
                    name=name,
                    address=self._address(name),
                    user="root",
                    key_file=str(self.key_file),
                    known_hosts=str(self.known_hosts),
                    connect_timeout=5.0,
                ),
                cluster=self.cluster.name,
            )
        if name not in self._hosts:
            config = self._ssh_config(name)
            self._hosts[name] = SshHost(
                SshTarget(
                    name=name,
                    address=config.hostname,
                    port=config.port,
                    user=config.user,  # "vagrant", with passwordless sudo on the boxes
                    key_file=config.identity_file,
                    known_hosts=str(self.known_hosts),
                ),
                cluster=self.cluster.name,
            )
        return self._hosts[name]

    def machine_state(self, name: str) -> MachineState:
        """VirtualBox's view of the VM (for fencing): powered off or aborted is DEAD, paused
        or saved is FROZEN; a running VM is RUNNING (or PATRONI_DOWN when it says so)."""
        vm_name = self.vm_name(name)
        res = self.vagrant("status", vm_name, "--machine-readable", check=False)
        vm = parse_status(res.stdout).get(vm_name)
        if vm in ("poweroff", "aborted", "not_created", "shutoff", "stopped"):
            return MachineState.DEAD
        if vm in ("paused", "saved", "suspended"):
            return MachineState.FROZEN
        if vm != "running":
            return MachineState.UNKNOWN
        return booted_machine_state(self.host(name), self.cluster.name)

    def power_off(self, name: str) -> None:
        self._drop(name)
        self.vagrant("halt", "--force", self.vm_name(name))

    def destroy(self, name: str) -> None:
        self._drop(name)
        self.write_machine_list()
        self.vagrant("destroy", "-f", self.vm_name(name), timeout=UP_TIMEOUT)
        ssh = self.vm_dir / name / "ssh.json"
        if ssh.exists():
            config = SshConfig(**json.loads(ssh.read_text()))
            unpin_host_key(self.known_hosts, config.hostname, config.port)
        if self.docker:
            unpin_host_key(self.known_hosts, self._address(name))
        shutil.rmtree(self.vm_dir / name, ignore_errors=True)
        self.write_machine_list()
        if self.docker and not self.created():
            # The last machine: nothing of the cluster stays in Docker (the box goes too
            # unless another cluster's container still uses it).
            vd.remove_network(self.docker_network)
            vd.remove_image_if_unused(vd.image_tag())

    def _address(self, name: str) -> str:
        created = self.vm_dir / name / "created"
        if created.exists():
            return str(json.loads(created.read_text())["address"])
        return self.topology.address(name)

    def _drop(self, name: str) -> None:
        h = self._hosts.pop(name, None)
        if h is not None:
            h.close()


def _wait_for(host: SshHost, timeout: float) -> None:
    """The VM's sshd restarts with the installed host key right after provisioning."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            host.run(["true"])
            return
        except SshUnreachable:  # a wrong or changed key is never waited out
            if time.monotonic() > deadline:
                raise
            time.sleep(2)
