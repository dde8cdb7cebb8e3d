"""The `local` provider: each machine is a directory under the cluster's state dir and owns a
loopback address; its services run under the operator's small supervisor (hosts/local.py).

The same PostgreSQL, Patroni, etcd and HAProxy binaries run as on a VM; only the machine
boundary is simulated.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import sys
from pathlib import Path
from typing import Literal

from pgha_operator.core.errors import PermanentError
from pgha_operator.core.facts.observed import MachineFact
from pgha_operator.core.facts.types import MachineState
from pgha_operator.core.render import HAPROXY_USER, Binaries
from pgha_operator.core.render.context import PatroniSource
from pgha_operator.core.render.tls import ETCD_USER
from pgha_operator.core.services import ServiceState
from pgha_operator.core.topology import Layout, Machine, Role, layout
from pgha_operator.shell.hosts import procfs
from pgha_operator.shell.hosts.local import LocalHost
from pgha_operator.shell.hosts.supervisor import TAG_VAR
from pgha_operator.shell.providers.base import (
    BrokenMachineFile,
    DeathReports,
    Fencing,
    Freezing,
    HostSockets,
    MachineStates,
    ProviderBase,
    broken_machine,
    read_machine_file,
)

SYSTEM_STATE_ROOT = Path("/var/lib/pgha-operator")
PATRONI_HINT = {
    "pypi": "Patroni (run `make setup`)",
    "debian": "Debian's patroni package (spec.patroni.source: debian): apt-get install patroni",
}
PATRONI_VENV_BIN = Path("/opt/pgha-operator/patroni/bin/patroni")


def default_state_dir(cluster: str) -> Path:
    """Root: /var/lib/pgha-operator/<cluster>; others: $XDG_STATE_HOME/pgha-operator/<cluster>."""
    if os.geteuid() == 0:
        return SYSTEM_STATE_ROOT / cluster
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "pgha-operator" / cluster


def service_user() -> str | None:
    """PostgreSQL refuses to run as root: as root, Patroni runs as `postgres`."""
    return "postgres" if os.geteuid() == 0 else None


def find_binaries(source: PatroniSource = "pypi") -> Binaries:
    """pypi: $PGHA_PATRONI_BIN, else the /opt venv (root), else the operator's own venv;
    debian: /usr/bin/patroni from Debian's package."""
    if source == "debian":
        return Binaries().for_patroni_source("debian")
    patroni = os.environ.get("PGHA_PATRONI_BIN")
    if not patroni:
        if os.geteuid() == 0 and PATRONI_VENV_BIN.exists():
            patroni = str(PATRONI_VENV_BIN)
        else:
            patroni = str(Path(sys.executable).parent / "patroni")
    return Binaries(patroni=patroni)


class LocalProvider(ProviderBase, Fencing, MachineStates, Freezing, DeathReports, HostSockets):
    kind = "local"
    service_manager: Literal["local", "systemd"] = "local"

    def __init__(self, state_dir: Path, user: str | None, binaries: Binaries) -> None:
        self.state_dir = state_dir
        self.user = user
        self.service_user = user
        self.binaries = binaries
        self.machines_dir = state_dir / "machines"

    def preflight(self) -> None:
        preflight(self.state_dir, self.user, self.binaries)

    def root(self, name: str) -> str:
        return str(self.machines_dir / name)

    def layout(self, name: str) -> Layout:
        return layout(self.root(name))

    def machines(self) -> list[MachineFact]:
        if not self.machines_dir.is_dir():
            return []
        facts = []
        for d in sorted(self.machines_dir.iterdir()):
            try:
                meta = read_machine_file(d / "machine.json")
            except BrokenMachineFile as e:
                facts.append(broken_machine(d.name, e))
                continue
            if meta is not None:
                facts.append(MachineFact(d.name, True, meta["address"]))
        return facts

    def create(self, machine: Machine) -> None:
        lay = self.layout(machine.name)
        # A broken record is repaired by hand, never overwritten: refuse, naming the file.
        read_machine_file(Path(lay.root) / "machine.json")
        host = self.host(machine.name)
        for d in (lay.root, f"{lay.root}/etc", lay.services_dir, lay.log_dir, f"{lay.root}/run"):
            host.ensure_dir(d, mode=0o755)
        # PostgreSQL's data, socket and pgpass live under a directory its user owns.
        pg_home = str(Path(lay.pg_data).parent)
        host.ensure_dir(pg_home, mode=0o700, owner=self.user)
        host.ensure_dir(lay.pg_socket_dir, mode=0o700, owner=self.user)
        # etcd runs as its own user when the operator can switch users (render/tls.py).
        etcd_user = ETCD_USER if self.user is not None else None
        host.ensure_dir(str(Path(lay.etcd_data).parent), mode=0o700, owner=etcd_user)
        if machine.has(Role.LOADBALANCER):
            # HAProxy, started as haproxy, creates its stats socket here (and again on reload).
            haproxy = HAPROXY_USER if self.user is not None else None
            host.ensure_dir(str(Path(lay.haproxy_socket).parent), mode=0o700, owner=haproxy)
        # Written last: a machine counts as existing only once its layout is complete.
        meta = {"name": machine.name, "address": machine.address}
        host.write(f"{lay.root}/machine.json", (json.dumps(meta) + "\n").encode())

    def destroy(self, name: str) -> None:
        root = Path(self.root(name))
        if not root.exists():
            return
        self.host(name).kill_all()
        shutil.rmtree(root)

    def host(self, name: str) -> LocalHost:
        return LocalHost(name, self.root(name), tag=self.root(name))

    def power_off(self, name: str) -> None:
        """A power cut: SIGKILL every process of the machine and confirm none is left."""
        self.host(name).kill_all()

    def machine_state(self, name: str) -> MachineState:
        """The provider's own view of a machine, independent of what its services answer."""
        host = self.host(name)
        pids = host.processes()
        if not pids:
            return MachineState.DEAD
        if all(procfs.proc_state(pid) in procfs.STOPPED_STATES for pid in pids):
            return MachineState.FROZEN  # every process stopped: a hung machine
        if host.service("patroni").state() != ServiceState.RUNNING:
            return MachineState.PATRONI_DOWN
        return MachineState.RUNNING

    def vital_processes(self, name: str) -> dict[int, int]:
        """Patroni and the postmaster: once both have exited, the machine no longer serves
        PostgreSQL (a crash). Patroni alone dying is not a death (Patroni is restarted)."""
        host = self.host(name)
        found: dict[int, int] = {}
        patroni = host.service("patroni").pid()
        postmaster = _postmaster_pid(self.layout(name).pg_data)
        marker = f"{TAG_VAR}={host.tag}".encode()
        for pid in (patroni, postmaster):
            st = procfs.proc_stat(pid) if pid else None
            env = procfs.read_environ(pid) if pid else None
            # Only a live process of this machine (its tag): a stale pid file may name
            # any process by now.
            if pid and st and st.state not in procfs.DEAD_STATES and env and marker in env:
                found[pid] = st.starttime
        return found

    def host_path(self, name: str, path: str) -> str:
        return path  # a local machine's paths are this host's

    def freeze(self, name: str) -> None:
        """SIGSTOP every process of the machine (a hung VM), again until a scan finds
        nothing new (a process forked while we signalled). PostgreSQL's children each lead
        their own process group, so there is no single group to signal."""
        host = self.host(name)
        stopped: set[tuple[int, int]] = set()
        for _ in range(20):
            fresh = set(host.process_table().items()) - stopped
            if not fresh:
                return
            for pid, starttime in fresh:
                procfs.signal_exact(pid, starttime, signal.SIGSTOP)
            stopped |= fresh

    def thaw(self, name: str) -> None:
        """SIGCONT every process of the machine: a hung VM resumes all at once."""
        for pid, starttime in self.host(name).process_table().items():
            procfs.signal_exact(pid, starttime, signal.SIGCONT)


def _postmaster_pid(pg_data: str) -> int | None:
    """The first line of postmaster.pid (PostgreSQL writes it at start, removes it at a
    clean stop); None when absent or unreadable."""
    try:
        with open(Path(pg_data) / "postmaster.pid") as f:
            return int(f.readline().strip())
    except (OSError, ValueError):
        return None


def preflight(state_dir: Path, user: str | None, binaries: Binaries) -> None:
    """Fail early, naming the path, when something the cluster needs is missing or unreachable."""
    required = [
        (binaries.etcd, "etcd (Debian package etcd-server)"),
        (binaries.haproxy, "haproxy (Debian package haproxy)"),
        (f"{binaries.pg_bin_dir}/postgres", "PostgreSQL 15 (Debian package postgresql-15)"),
        (f"{binaries.pg_bin_dir}/initdb", "PostgreSQL 15 (Debian package postgresql-15)"),
        (binaries.patroni, PATRONI_HINT[binaries.patroni_source]),
    ]
    for path, what in required:
        if not os.access(path, os.X_OK):
            raise PermanentError(f"missing binary {path}: install {what}")
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(state_dir, 0o755)
        probe = state_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise PermanentError(
            f"state dir {state_dir} is not writable ({exc.strerror}); choose another "
            "with --state-dir"
        ) from exc
    if user is None:
        return
    uid = pwd.getpwnam(user).pw_uid
    host = LocalHost("preflight", str(state_dir), tag=str(state_dir))
    # Ask as the user itself: the only honest test of every parent directory's mode.
    for path in (str(state_dir), str(Path(binaries.patroni).parent)):
        res = host.run(["test", "-x", path], user=user, check=False)
        if not res.ok:
            raise PermanentError(
                f"user {user} (uid {uid}) cannot reach {path}: a parent directory is not "
                "traversable (e.g. a home directory of mode 700); use a --state-dir under "
                "/var/lib or /tmp, and the Patroni venv under /opt (make setup)"
            )
    res = host.run([binaries.patroni, "--version"], user=user, check=False, timeout=60)
    if not res.ok:
        raise PermanentError(
            f"user {user} cannot run {binaries.patroni}: {res.stderr.strip()[-300:]}"
        )
