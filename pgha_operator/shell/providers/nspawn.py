"""The `nspawn` provider: each machine is a systemd-nspawn container booting a real Debian 12
(systemd, sshd) from an overlay of one cached rootfs, in its own network namespace wired to a
bridge the provider owns. The operator reaches it over SSH, like any remote machine.

Root only. Per machine, under <state>/machines/<name>/:
  machine.json   name, address, rootfs        upper/ work/   the overlay's writable layers
  root/          the overlay mount (merged)   nspawn.pid     pid + start time of systemd-nspawn
  console.log    the container's console      ssh_host_ed25519_key(.pub)  its host key
and for the cluster: <state>/ssh/id_ed25519 (the operator's key), <state>/known_hosts.

A machine "exists" for the plan while it runs and answers on port 22; a stopped or
hard-stopped machine keeps its disk (upper/), so create() boots it again with its data.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
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
from pgha_operator.core.topology import Layout, Machine
from pgha_operator.shell.hosts.base import HostError
from pgha_operator.shell.hosts.ssh import SshHost, SshTarget
from pgha_operator.shell.providers import nspawn_net as net
from pgha_operator.shell.providers.base import booted_machine_state
from pgha_operator.shell.providers.nspawn_rootfs import ensure_rootfs, rootfs_path
from pgha_operator.shell.providers.packages import prepare_machine
from pgha_operator.shell.providers.sshkeys import ensure_client_key, generate_host_key, pin_host_key

log = structlog.get_logger("pgha-operator")

SERVICE_USER = "postgres"
BOOT_TIMEOUT = 90.0  # boot to sshd answering; measured 0.8-1.3 s, generous for CI
STOP_TIMEOUT = 60.0  # a clean poweroff; measured ~3 s
KILL_TIMEOUT = 15.0
REQUIRED_TOOLS = ("systemd-nspawn", "ip", "nsenter", "mount", "umount", "ssh-keygen")


class NspawnProvider:
    kind = "nspawn"
    service_manager: Literal["local", "systemd"] = "systemd"
    service_user: str | None = SERVICE_USER
    can_fence = True

    def __init__(self, cluster: Cluster, state_dir: Path) -> None:
        spec = cluster.spec.provider
        if not isinstance(spec, NspawnProviderSpec):
            raise TypeError("NspawnProvider needs a manifest with provider type nspawn")
        self.cluster = cluster
        self.spec = spec
        self.binaries = Binaries().for_patroni_source(cluster.spec.patroni.source)
        self.state_dir = state_dir
        self.topology = topology.build(cluster)
        self.machines_dir = state_dir / "machines"
        self.key_file = state_dir / "ssh" / "id_ed25519"
        self.known_hosts = state_dir / "known_hosts"
        used = {m.address for m in self.topology.machines}
        self.net = net.LabNetwork(
            cluster.name, spec.network, net.operator_address(spec.network, used)
        )
        self._hosts: dict[str, SshHost] = {}
        self._reapers: dict[int, threading.Thread] = {}

    # --- checks -------------------------------------------------------------------------------

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
        try:
            return json.loads((self._dir(name) / "machine.json").read_text())
        except (OSError, ValueError):
            return None

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
            meta = self._meta(d.name)
            if meta is None:
                continue
            address = meta.get("address")
            up = self.running(d.name) and address is not None and _port_open(address, 22)
            facts.append(MachineFact(d.name, up, address))
        return facts

    def running(self, name: str) -> bool:
        return self._nspawn_pid(name) is not None

    def _nspawn_pid(self, name: str) -> int | None:
        try:
            rec = json.loads((self._dir(name) / "nspawn.pid").read_text())
            pid, starttime = int(rec["pid"]), int(rec["starttime"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return pid if _alive(pid, starttime) else None

    # --- lifecycle ----------------------------------------------------------------------------

    def create(self, machine: Machine) -> None:
        """Make the machine (first time) or boot it again (after a stop), wait for SSH, and
        check that everything it needs is installed."""
        self.preflight()
        d = self._dir(machine.name)
        meta = self._meta(machine.name)
        if meta is None:
            rootfs = self._rootfs()
            for sub in ("upper", "work", "root"):
                (d / sub).mkdir(parents=True, exist_ok=True)
            d.chmod(0o700)
            meta = {"name": machine.name, "address": machine.address, "rootfs": str(rootfs)}
            _write_json(d / "machine.json", meta)
        elif meta.get("address") != machine.address:
            raise PermanentError(
                f"machine {machine.name} exists with address {meta.get('address')}; the "
                f"manifest says {machine.address}: destroy it first to change its address"
            )
        rootfs = Path(meta["rootfs"])
        if not (rootfs / "etc/os-release").exists():
            raise PermanentError(
                f"machine {machine.name} was made from {rootfs}, which no longer exists; "
                "destroy the machine to make it again"
            )
        net.ensure_switch(self.net)
        if self.running(machine.name) and not net.machine_connected(self.net, machine.name):
            raise TemporaryError(
                f"machine {machine.name} runs but is cut off from the network (isolated for a "
                "partition drill); it is left alone until reconnected"
            )
        net.ensure_machine_link(self.net, machine.name, machine.address)
        self._mount(machine.name, rootfs)
        self._personalise(machine.name, machine.address)
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

    def _rootfs(self) -> Path:
        path = rootfs_path(self.spec.rootfs_cache)
        if not (path / ".pgha-rootfs.json").exists():
            log.info("building the nspawn rootfs once (debootstrap, ~1-2 min)", path=str(path))
        return ensure_rootfs(self.spec.rootfs_cache, self.state_dir / "rootfs-build.log")

    def _mount(self, name: str, rootfs: Path) -> None:
        d = self._dir(name)
        if _is_mountpoint(d / "root"):
            return
        opts = f"lowerdir={rootfs},upperdir={d / 'upper'},workdir={d / 'work'}"
        _run(["mount", "-t", "overlay", "overlay", "-o", opts, str(d / "root")], "overlay mount")

    def _personalise(self, name: str, address: str) -> None:
        """Identity that must differ per machine, written into its overlay before boot: host
        key (pinned in known_hosts), machine-id, the operator's authorized key."""
        d = self._dir(name)
        root = d / "root"
        key = d / "ssh_host_ed25519_key"
        if not key.exists():
            generate_host_key(key, comment=name)
        pin_host_key(self.known_hosts, address, (d / "ssh_host_ed25519_key.pub").read_text())
        _install(root / "etc/ssh/ssh_host_ed25519_key", key.read_bytes(), 0o600)
        _install(
            root / "etc/ssh/ssh_host_ed25519_key.pub",
            (d / "ssh_host_ed25519_key.pub").read_bytes(),
            0o644,
        )
        client_pub = ensure_client_key(self.key_file)
        ssh_dir = root / "root/.ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        _install(ssh_dir / "authorized_keys", client_pub.encode(), 0o600)
        machine_id = root / "etc/machine-id"
        if not machine_id.read_text().strip():
            _install(machine_id, (secrets.token_hex(16) + "\n").encode(), 0o444)
        _install(root / "etc/hostname", f"{name}\n".encode(), 0o644)

    def _boot(self, name: str) -> None:
        d = self._dir(name)
        argv = [
            "systemd-nspawn",
            "--quiet",
            "--boot",
            f"--directory={d / 'root'}",
            # Unique on this host (nspawn keys runtime paths on it); the hostname is plain.
            f"--machine={self.net.machine_ns(name).replace('.', '-')}",
            f"--hostname={name}",
            # PID 1 here is not systemd: no machined registration, no scope unit.
            "--register=no",
            "--keep-unit",
            f"--network-namespace-path={net.netns_path(self.net.machine_ns(name))}",
            "--resolv-conf=off",
            "--timezone=off",
            "--link-journal=no",
            "--console=passive",
        ]
        with open(d / "console.log", "ab") as out:
            out.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} booting\n".encode())
            out.flush()
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                close_fds=True,
                start_new_session=True,  # the operator's Ctrl-C is not the machine's
            )
        starttime = _starttime(proc.pid)
        reaper = threading.Thread(target=proc.wait, name=f"pgha-nspawn-{name}", daemon=True)
        reaper.start()
        _write_json(d / "nspawn.pid", {"pid": proc.pid, "starttime": starttime})
        self._hosts.pop(name, None)  # a fresh boot: drop any connection to the old one

    def _wait_ready(self, machine: Machine) -> None:
        deadline = time.monotonic() + BOOT_TIMEOUT
        while not _port_open(machine.address, 22):
            if not self.running(machine.name):
                raise PermanentError(
                    f"machine {machine.name} stopped while booting; see "
                    f"{self._dir(machine.name) / 'console.log'}:\n{self._console_tail(machine.name)}"
                )
            if time.monotonic() > deadline:
                raise TemporaryError(
                    f"machine {machine.name}: sshd on {machine.address}:22 did not answer within "
                    f"{BOOT_TIMEOUT:.0f} s; console: {self._dir(machine.name) / 'console.log'}"
                )
            time.sleep(0.1)
        # systemd answers for its units only once the manager is up; wait for the boot.
        self.host(machine.name).run(
            ["systemctl", "is-system-running", "--wait"], check=False, timeout=BOOT_TIMEOUT
        )

    def _console_tail(self, name: str) -> str:
        try:
            text = (self._dir(name) / "console.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-20:])

    def host(self, name: str) -> SshHost:
        cached = self._hosts.get(name)
        if cached is not None:
            return cached
        meta = self._meta(name)
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
            )
        )
        self._hosts[name] = h
        return h

    def start(self, name: str) -> None:
        """Boot a stopped machine again (the same as the plan's create)."""
        self.create(self.topology.machine(name))

    def stop(self, name: str, timeout: float = STOP_TIMEOUT) -> None:
        """A clean shutdown: SIGTERM makes systemd-nspawn power the container off."""
        pid = self._nspawn_pid(name)
        self._drop_host(name)
        if pid is None:
            return
        _signal(pid, signal.SIGTERM)
        if not _wait_gone(lambda: self.running(name), timeout):
            log.warning("machine did not power off in time; hard stop", machine=name)
            self.power_off(name)

    def power_off(self, name: str) -> None:
        """A power cut: SIGKILL the container's PID 1, which kills everything in its PID
        namespace at once; systemd-nspawn then exits."""
        pid = self._nspawn_pid(name)
        self._drop_host(name)
        if pid is None:
            return
        init = _container_init(pid)
        if init is not None:
            _signal(init, signal.SIGKILL)
        if not _wait_gone(lambda: self.running(name), KILL_TIMEOUT):
            _signal(pid, signal.SIGKILL)
            if not _wait_gone(lambda: self.running(name), KILL_TIMEOUT):
                raise HostError(f"machine {name}: systemd-nspawn (pid {pid}) survived SIGKILL")

    def machine_state(self, name: str) -> MachineState:
        """What the host sees of a machine, whatever its network says (for fencing): no
        nspawn is DEAD; every process of its PID namespace stopped is FROZEN; Patroni's unit
        down while the machine answers is PATRONI_DOWN; anything else RUNNING (a machine
        cut off from the network still runs)."""
        pid = self._nspawn_pid(name)
        init = _container_init(pid) if pid is not None else None
        if pid is None or init is None:
            return MachineState.DEAD
        # Zombies and the dying do not run either; only live processes decide.
        states = [st for st in _namespace_states(init) if st not in ("Z", "X")]
        if states and all(st in ("T", "t") for st in states):
            return MachineState.FROZEN
        return booted_machine_state(self.host(name))

    def freeze(self, name: str) -> None:
        """SIGSTOP every process of the machine (a hung VM) until thaw(): for drills."""
        self._signal_all(name, signal.SIGSTOP)

    def thaw(self, name: str) -> None:
        self._signal_all(name, signal.SIGCONT)

    def _signal_all(self, name: str, sig: int) -> None:
        pid = self._nspawn_pid(name)
        init = _container_init(pid) if pid is not None else None
        if init is None:
            raise HostError(f"machine {name} is not running")
        # Repeat until no new process shows up: one forked between listing and signalling
        # would otherwise keep running, and the machine would not be frozen at all.
        done: set[int] = set()
        for _ in range(20):
            fresh = set(_namespace_pids(init)) - done
            if not fresh:
                return
            for member in fresh:
                _signal(member, sig)
            done |= fresh
            time.sleep(0.05)

    def isolate(self, name: str) -> None:
        """Cut the machine's link (partition drills): it keeps running, unreachable."""
        net.set_machine_connected(self.net, name, False)

    def reconnect(self, name: str) -> None:
        net.set_machine_connected(self.net, name, True)

    def destroy(self, name: str) -> None:
        """Stop the machine and remove everything it had: processes, mount, namespace, disk.
        The last machine of the cluster also takes the switch and the operator's link."""
        d = self._dir(name)
        if d.exists():
            self.stop(name, timeout=30)
            root = d / "root"
            if _is_mountpoint(root):
                _umount(root)
        net.remove_machine_link(self.net, name)
        if d.exists():
            shutil.rmtree(d)
        _forget_host_key(self.known_hosts, self.topology_address(name))
        if not self.machines_dir.exists() or not any(self.machines_dir.iterdir()):
            net.remove_switch(self.net)

    def topology_address(self, name: str) -> str | None:
        try:
            return self.topology.address(name)
        except KeyError:
            return None

    def _drop_host(self, name: str) -> None:
        h = self._hosts.pop(name, None)
        if h is not None:
            h.close()


# --- helpers ----------------------------------------------------------------------------------


def _port_open(address: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def _write_json(path: Path, data: object) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data) + "\n")
    os.replace(tmp, path)


def _install(path: Path, data: bytes, mode: int) -> None:
    """Write a file inside a machine's overlay as root with that mode, if it differs."""
    with contextlib.suppress(FileNotFoundError):
        st = path.stat()
        if path.read_bytes() == data and (st.st_mode & 0o7777) == mode and st.st_uid == 0:
            return
    tmp = path.with_name(f".{path.name}.pgha-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        os.fchmod(f.fileno(), mode)
        os.fchown(f.fileno(), 0, 0)
    os.replace(tmp, path)


def _run(argv: list[str], what: str) -> None:
    res = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    if res.returncode != 0:
        raise PermanentError(f"{what} failed: {' '.join(argv)}: {res.stderr.strip()}")


def _is_mountpoint(path: Path) -> bool:
    target = str(path)
    try:
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == target for line in f)
    except OSError:
        return False


def _umount(path: Path) -> None:
    for _ in range(20):
        res = subprocess.run(["umount", str(path)], capture_output=True, text=True, timeout=60)
        if res.returncode == 0 or not _is_mountpoint(path):
            return
        time.sleep(0.25)  # processes of a machine that just stopped may still hold it
    _run(["umount", "--lazy", str(path)], "unmount")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rindex(b")") + 2 :].decode().split()


def _starttime(pid: int) -> int:
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else 0


def _alive(pid: int, starttime: int) -> bool:
    """Alive, not a zombie (PID 1 here may not reap), and not a reused pid."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X") and int(fields[19]) == starttime


def _signal(pid: int, sig: int) -> None:
    """Signal pid only while it is the process we looked at: a pidfd pins it, so a pid
    reused between our check and the signal is never hit."""
    starttime = _starttime(pid)
    try:
        pidfd = os.pidfd_open(pid)
    except (ProcessLookupError, PermissionError):
        return
    try:
        if starttime and _starttime(pid) == starttime:
            signal.pidfd_send_signal(pidfd, sig)
    except (ProcessLookupError, PermissionError):
        pass
    finally:
        os.close(pidfd)


def _container_init(nspawn_pid: int) -> int | None:
    """The container's PID 1: the child of systemd-nspawn in another PID namespace."""
    try:
        own = os.readlink(f"/proc/{nspawn_pid}/ns/pid")
    except OSError:
        return None
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is None or int(fields[1]) != nspawn_pid:
            continue
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{entry}/ns/pid") != own:
                return int(entry)
    return None


def _namespace_pids(init: int) -> list[int]:
    """Every process in the PID namespace of `init` (a container's PID 1)."""
    try:
        ns = os.readlink(f"/proc/{init}/ns/pid")
    except OSError:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{entry}/ns/pid") == ns:
                    pids.append(int(entry))
    return pids


def _namespace_states(init: int) -> list[str]:
    """The scheduler state of every process in the PID namespace of `init`."""
    fields = (_stat_fields(pid) for pid in _namespace_pids(init))
    return [f[0] for f in fields if f is not None]


def _wait_gone(still_there: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while still_there():  # type: ignore[operator]
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _forget_host_key(known_hosts: Path, address: str | None) -> None:
    if address is None or not known_hosts.exists():
        return
    from pgha_operator.shell.providers.sshkeys import unpin_host_key

    unpin_host_key(known_hosts, address)
