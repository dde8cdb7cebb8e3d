"""The `nspawn` provider: each machine is a systemd-nspawn container booting a real Debian 12
(systemd, sshd) from an overlay of one cached rootfs, in its own network namespace wired to a
bridge the provider owns. The operator reaches it over SSH, like any remote machine.

Root only. Per machine, under <state>/machines/<name>/:
  machine.json   name, address, rootfs        upper/ work/   the overlay's writable layers
  root/          the overlay mount (merged)   nspawn.pid     pid + start time of systemd-nspawn
  console.log    the container's console      ssh_host_ed25519_key(.pub)  its host key
and for the cluster: <state>/ssh/id_ed25519 (the operator's key), <state>/known_hosts.
Its disk: nspawn_disk.py; its processes: nspawn_process.py; its network: nspawn_net.py.

A machine "exists" for the plan while it runs and answers on port 22; a stopped or
hard-stopped machine keeps its disk (upper/), so create() boots it again with its data.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import time
from pathlib import Path
from typing import Literal

import structlog

from pgha_operator.core import topology
from pgha_operator.core.errors import PermanentError, TemporaryError
from pgha_operator.core.facts.observed import MachineFact
from pgha_operator.core.facts.types import MachineState
from pgha_operator.core.render import Binaries
from pgha_operator.core.spec import Cluster, NspawnProviderSpec
from pgha_operator.core.topology import Layout, Machine, Topology
from pgha_operator.shell.hosts import procfs
from pgha_operator.shell.hosts.base import HostError
from pgha_operator.shell.hosts.ssh import SshHost, SshTarget
from pgha_operator.shell.providers import nspawn_disk as disk
from pgha_operator.shell.providers import nspawn_net as net
from pgha_operator.shell.providers import nspawn_process as proc
from pgha_operator.shell.providers.base import (
    BrokenMachineFile,
    DeathReports,
    Fencing,
    Freezing,
    Isolation,
    MachineStates,
    PeerReach,
    ProviderBase,
    broken_machine,
    read_machine_file,
)
from pgha_operator.shell.providers.nspawn_rootfs import ensure_rootfs, rootfs_path
from pgha_operator.shell.providers.packages import prepare_machine
from pgha_operator.shell.providers.sshkeys import unpin_host_key

log = structlog.get_logger("pgha-operator")

SERVICE_USER = "postgres"
BOOT_TIMEOUT = 90.0  # boot to sshd answering; measured 0.8-1.3 s, generous for CI
STOP_TIMEOUT = 60.0  # a clean poweroff; measured ~3 s
KILL_TIMEOUT = 15.0
GONE_TIMEOUT = 60.0  # destroy: every process of the machine gone, helpers of nspawn included
REQUIRED_TOOLS = ("systemd-nspawn", "ip", "nsenter", "mount", "umount", "ssh-keygen")
META_KEYS = ("address", "rootfs")


class NspawnProvider(
    ProviderBase, Fencing, MachineStates, Freezing, Isolation, DeathReports, PeerReach
):
    kind = "nspawn"
    service_manager: Literal["local", "systemd"] = "systemd"
    service_user: str | None = SERVICE_USER

    def __init__(self, cluster: Cluster, state_dir: Path, topo: Topology | None = None) -> None:
        spec = cluster.spec.provider
        if not isinstance(spec, NspawnProviderSpec):
            raise TypeError("NspawnProvider needs a manifest with provider type nspawn")
        self.cluster = cluster
        self.spec = spec
        self.binaries = Binaries().for_patroni_source(cluster.spec.patroni.source)
        self.state_dir = state_dir
        self.topology = topo or topology.build(cluster)  # the controller passes its own
        self.machines_dir = state_dir / "machines"
        self.key_file = state_dir / "ssh" / "id_ed25519"
        self.known_hosts = state_dir / "known_hosts"
        used = {m.address for m in self.topology.machines}
        if spec_vip := cluster.spec.load_balancer.vip:
            used.add(str(spec_vip.address))  # never the operator's own link
        self.net = net.LabNetwork(
            cluster.name, spec.network, net.operator_address(spec.network, used)
        )
        self._hosts: dict[str, SshHost] = {}

    # --- checks -------------------------------------------------------------------------------

    def follow(self, cluster: Cluster, topo: Topology) -> None:
        """A scaled manifest: new machines are found in its topology."""
        self.cluster, self.topology = cluster, topo

    def preflight(self) -> None:
        if os.geteuid() != 0:
            raise PermanentError(
                "the nspawn provider needs root (network namespaces, mounts, systemd-nspawn); "
                "run as root, or use provider 'local'"
            )
        for tool in REQUIRED_TOOLS:
            if not shutil.which(tool):
                raise PermanentError(
                    f"{tool} not found: apt-get install systemd-container iproute2 util-linux "
                    "openssh-client (make setup)"
                )
        conflicts = net.route_conflicts(self.net)
        if conflicts:
            raise PermanentError(
                f"spec.provider.network {self.spec.network} overlaps routes of this host "
                f"({', '.join(conflicts)}); choose another network for the nspawn machines"
            )
        self.state_dir.mkdir(parents=True, exist_ok=True)

    # --- paths --------------------------------------------------------------------------------

    def _dir(self, name: str) -> Path:
        return self.machines_dir / name

    def _meta(self, name: str) -> dict[str, str] | None:
        """machine.json; raises BrokenMachineFile when it is there but unreadable."""
        return read_machine_file(self._dir(name) / "machine.json", META_KEYS)

    def root(self, name: str) -> Path:
        return self._dir(name) / "root"

    def layout(self, name: str) -> Layout:
        return topology.layout("/", self.cluster.name)

    # --- observation --------------------------------------------------------------------------

    def machines(self) -> list[MachineFact]:
        if not self.machines_dir.is_dir():
            return []
        facts = []
        for d in sorted(self.machines_dir.iterdir()):
            try:
                meta = self._meta(d.name)
            except BrokenMachineFile as e:
                facts.append(broken_machine(d.name, e))
                continue
            if meta is None:
                continue
            address = meta["address"]
            up = self.running(d.name) and _port_open(address, 22)
            facts.append(MachineFact(d.name, up, address))
        return facts

    def running(self, name: str) -> bool:
        return proc.running(self._dir(name)) is not None

    # --- lifecycle ----------------------------------------------------------------------------

    def create(self, machine: Machine) -> None:
        """Make the machine (first time) or boot it again (after a stop), wait for SSH, and
        check that everything it needs is installed."""
        self.preflight()
        rootfs = self._make_disk(machine)
        net.ensure_switch(self.net)
        if self.running(machine.name) and not net.machine_connected(self.net, machine.name):
            raise TemporaryError(
                f"machine {machine.name} runs but is cut off from the network (isolated for a "
                "partition drill); it is left alone until reconnected"
            )
        net.ensure_machine_link(self.net, machine.name, machine.address)
        d = self._dir(machine.name)
        disk.mount_overlay(d, rootfs)
        disk.personalise(d, machine.name, machine.address, self.known_hosts, self.key_file)
        if not self.running(machine.name):
            self._boot(machine.name)
        self._wait_ready(machine)
        prepare_machine(
            self.host(machine.name),
            machine,
            self.layout(machine.name),
            SERVICE_USER,
            self.binaries.patroni_source,
        )

    def _make_disk(self, machine: Machine) -> Path:
        """The machine's directory and record (first time); returns the rootfs it uses."""
        d = self._dir(machine.name)
        meta = self._meta(machine.name)
        if meta is None:
            rootfs = self._rootfs()
            for sub in ("upper", "work", "root"):
                (d / sub).mkdir(parents=True, exist_ok=True)
            d.chmod(0o700)
            meta = {"name": machine.name, "address": machine.address, "rootfs": str(rootfs)}
            disk.write_json(d / "machine.json", meta)
        elif meta["address"] != machine.address:
            raise PermanentError(
                f"machine {machine.name} exists with address {meta['address']}; the "
                f"manifest says {machine.address}: destroy it first to change its address"
            )
        rootfs = Path(meta["rootfs"])
        if not (rootfs / "etc/os-release").exists():
            raise PermanentError(
                f"machine {machine.name} was made from {rootfs}, which no longer exists; "
                "destroy the machine to make it again"
            )
        return rootfs

    def _rootfs(self) -> Path:
        path = rootfs_path(self.spec.rootfs_cache)
        if not (path / ".pgha-rootfs.json").exists():
            log.info("building the nspawn rootfs once (debootstrap, ~1-2 min)", path=str(path))
        return ensure_rootfs(self.spec.rootfs_cache, self.state_dir / "rootfs-build.log")

    def _boot(self, name: str) -> None:
        ns = self.net.machine_ns(name)
        argv = proc.boot_argv(self._dir(name), ns.replace(".", "-"), name, net.netns_path(ns))
        proc.boot(self._dir(name), argv)
        self._drop_host(name)  # a fresh boot: drop any connection to the old one

    def _wait_ready(self, machine: Machine) -> None:
        deadline = time.monotonic() + BOOT_TIMEOUT
        console = self._dir(machine.name) / "console.log"
        while not _port_open(machine.address, 22):
            if not self.running(machine.name):
                raise PermanentError(
                    f"machine {machine.name} stopped while booting; see {console}:\n"
                    + disk.console_tail(self._dir(machine.name))
                )
            if time.monotonic() > deadline:
                raise TemporaryError(
                    f"machine {machine.name}: sshd on {machine.address}:22 did not answer within "
                    f"{BOOT_TIMEOUT:.0f} s; console: {console}"
                )
            time.sleep(0.1)
        # systemd answers for its units only once the manager is up; wait for the boot.
        self.host(machine.name).run(
            ["systemctl", "is-system-running", "--wait"], check=False, timeout=BOOT_TIMEOUT
        )

    def host(self, name: str) -> SshHost:
        cached = self._hosts.get(name)
        if cached is not None:
            return cached
        try:
            meta = self._meta(name)
        except BrokenMachineFile:
            meta = None
        address = meta["address"] if meta else self.topology.address(name)
        h = SshHost(
            SshTarget(
                name=name,
                address=address,
                key_file=str(self.key_file),
                known_hosts=str(self.known_hosts),
                user="root",
                connect_timeout=5.0,
                retries=3,
                retry_delay=0.5,
            ),
            cluster=self.cluster.name,
        )
        self._hosts[name] = h
        return h

    def start(self, name: str) -> None:
        """Boot a stopped machine again (the same as the plan's create)."""
        self.create(self.topology.machine(name))

    def stop(self, name: str, timeout: float = STOP_TIMEOUT) -> None:
        """A clean shutdown: SIGTERM makes systemd-nspawn power the container off."""
        nspawn = proc.running(self._dir(name))
        self._drop_host(name)
        if nspawn is None:
            return
        procfs.signal_exact(nspawn.pid, nspawn.starttime, signal.SIGTERM)
        if not procfs.wait_until(lambda: not self.running(name), timeout, poll=0.1):
            log.warning("machine did not power off in time; hard stop", machine=name)
            self.power_off(name)

    # --- capabilities -------------------------------------------------------------------------

    def power_off(self, name: str) -> None:
        """A power cut: SIGKILL the container's PID 1, which kills everything in its PID
        namespace at once; systemd-nspawn then exits."""
        d = self._dir(name)
        nspawn = proc.running(d)
        self._drop_host(name)
        if nspawn is None:
            return
        proc.power_cut(d)
        if not procfs.wait_until(lambda: not self.running(name), KILL_TIMEOUT, poll=0.1):
            procfs.signal_exact(nspawn.pid, nspawn.starttime, signal.SIGKILL)
            if not procfs.wait_until(lambda: not self.running(name), KILL_TIMEOUT, poll=0.1):
                raise HostError(
                    f"machine {name}: systemd-nspawn (pid {nspawn.pid}) survived SIGKILL"
                )

    def vital_processes(self, name: str) -> dict[int, int]:
        """The machine's systemd-nspawn: it exits when the container's PID 1 dies (a power
        cut), and the machine is off."""
        nspawn = proc.running(self._dir(name))
        return {} if nspawn is None else {nspawn.pid: nspawn.starttime}

    def machine_state(self, name: str) -> MachineState:
        """What the host sees of a machine, whatever its network says (for fencing): no
        nspawn is DEAD; every process of its PID namespace stopped is FROZEN; no Patroni
        process in it (its config file on a command line) is PATRONI_DOWN; anything else
        RUNNING (a machine cut off from the network still runs). All read from the host's
        /proc: a cut-off machine is judged at once, not after an SSH timeout."""
        init = proc.container_init(self._dir(name))
        if init is None:
            return MachineState.DEAD
        if proc.frozen(init):
            return MachineState.FROZEN
        if not proc.runs(init, self.layout(name).patroni_config):
            return MachineState.PATRONI_DOWN
        return MachineState.RUNNING

    def reaches(self, source: str, address: str, port: int, timeout: float) -> bool | None:
        """A TCP connection from `source`'s own network namespace (the fencer asks the
        replicas whether they lost the primary too)."""
        return net.reaches(self.net, source, address, port, timeout)

    def freeze(self, name: str) -> None:
        """SIGSTOP every process of the machine (a hung VM) until thaw(): for drills."""
        self._signal_all(name, signal.SIGSTOP)

    def thaw(self, name: str) -> None:
        self._signal_all(name, signal.SIGCONT)

    def _signal_all(self, name: str, sig: int) -> None:
        init = proc.container_init(self._dir(name))
        if init is None:
            raise HostError(f"machine {name} is not running")
        proc.signal_all(init, sig)

    def isolate(self, name: str) -> None:
        """Cut the machine's link (partition drills): it keeps running, unreachable."""
        net.set_machine_connected(self.net, name, False)

    def reconnect(self, name: str) -> None:
        net.set_machine_connected(self.net, name, True)

    # --- teardown -----------------------------------------------------------------------------

    def destroy(self, name: str) -> None:
        """Stop the machine and remove everything it had: processes, mount, namespace, disk.
        Returns only once no process of the machine is left. The last machine of the
        cluster also takes the switch and the operator's link."""
        d = self._dir(name)
        if d.exists():
            self.stop(name, timeout=30)
            self._wait_gone(name)
            if disk.is_mountpoint(d / "root"):
                disk.umount(d / "root")
        net.remove_machine_link(self.net, name)
        if d.exists():
            shutil.rmtree(d)
        address = self.topology_address(name)
        if address is not None and self.known_hosts.exists():
            unpin_host_key(self.known_hosts, address)
        if not self.machines_dir.exists() or not any(self.machines_dir.iterdir()):
            net.remove_switch(self.net)

    def _wait_gone(self, name: str) -> None:
        """Wait, by pid, until systemd-nspawn, its helpers and the container's processes have
        all exited (nspawn is still tearing down for a moment after its container stops)."""
        d = self._dir(name)
        left: dict[int, int] = {}

        def gone() -> bool:
            left.clear()
            left.update(proc.machine_processes(d))
            return not left

        if not procfs.wait_until(gone, GONE_TIMEOUT, poll=0.1):
            raise HostError(
                f"machine {name}: processes {sorted(left)} still run {GONE_TIMEOUT:.0f} s "
                "after it was stopped"
            )

    def topology_address(self, name: str) -> str | None:
        try:
            return self.topology.address(name)
        except KeyError:
            return None

    def _drop_host(self, name: str) -> None:
        h = self._hosts.pop(name, None)
        if h is not None:
            h.close()


def _port_open(address: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False
