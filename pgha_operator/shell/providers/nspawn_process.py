"""The processes of an nspawn machine: systemd-nspawn (its pid and start time recorded in
<machine>/nspawn.pid), the container's PID 1, and everything in the container's PID
namespace. Read and signalled through hosts/procfs.py, so a reused pid is never hit."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import NamedTuple

from pgha_operator.shell.hosts import procfs
from pgha_operator.shell.providers.nspawn_disk import write_json

PID_FILE = "nspawn.pid"
NSPAWN = b"systemd-nspawn"


class Proc(NamedTuple):
    pid: int
    starttime: int


def boot_argv(machine_dir: Path, machine: str, hostname: str, netns_path: str) -> list[str]:
    return [
        "systemd-nspawn",
        "--quiet",
        "--boot",
        f"--directory={machine_dir / 'root'}",
        # Unique on this host (nspawn keys runtime paths on it); the hostname is plain.
        f"--machine={machine}",
        f"--hostname={hostname}",
        # PID 1 here is not systemd: no machined registration, no scope unit.
        "--register=no",
        "--keep-unit",
        f"--network-namespace-path={netns_path}",
        # Its own namespace's network, as a VM has: keepalived adds and removes the VIP
        # (nspawn grants it only with the network options it makes itself).
        "--capability=CAP_NET_ADMIN",
        "--resolv-conf=off",
        "--timezone=off",
        "--link-journal=no",
        "--console=passive",
    ]


def boot(machine_dir: Path, argv: list[str]) -> Proc:
    """Start systemd-nspawn (console to console.log) and record it in nspawn.pid."""
    with open(machine_dir / "console.log", "ab") as out:
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
    # Read before the reaper may wait(): until then the child's /proc entry exists.
    starttime = procfs.proc_starttime(proc.pid) or 0
    threading.Thread(target=proc.wait, name=f"pgha-nspawn-{proc.pid}", daemon=True).start()
    write_json(machine_dir / PID_FILE, {"pid": proc.pid, "starttime": starttime})
    return Proc(proc.pid, starttime)


def running(machine_dir: Path) -> Proc | None:
    """The machine's systemd-nspawn while it runs."""
    try:
        rec = json.loads((machine_dir / PID_FILE).read_text())
        proc = Proc(int(rec["pid"]), int(rec["starttime"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return proc if procfs.alive(proc.pid, proc.starttime) else None


def container_init(machine_dir: Path) -> int | None:
    proc = running(machine_dir)
    return None if proc is None else procfs.container_init(proc.pid)


def frozen(init: int) -> bool:
    """Every live process of the container is stopped (SIGSTOP): a hung machine."""
    states = [st.state for st in procfs.namespace_processes(init).values()]
    return bool(states) and all(s in procfs.STOPPED_STATES for s in states)


def runs(init: int, argument: str) -> bool:
    """Some live process of the container has `argument` in its command line (seen from
    the host: no need for the machine's network)."""
    arg = argument.encode()
    return any(
        arg in procfs.read_cmdline(pid)
        for pid, st in procfs.namespace_processes(init).items()
        if st.state not in procfs.DEAD_STATES
    )


def signal_all(init: int, sig: int) -> None:
    """Signal every process of the container, again until no new one shows up: one forked
    between listing and signalling would otherwise keep running (a freeze that is none)."""
    done: set[Proc] = set()
    for _ in range(20):
        fresh = {Proc(p, st.starttime) for p, st in procfs.namespace_processes(init).items()}
        fresh -= done
        if not fresh:
            return
        for proc in fresh:
            procfs.signal_exact(proc.pid, proc.starttime, sig)
        done |= fresh
        time.sleep(0.05)


def power_cut(machine_dir: Path) -> None:
    """SIGKILL the container's PID 1, which kills everything in its PID namespace at once."""
    proc = running(machine_dir)
    init = None if proc is None else procfs.container_init(proc.pid)
    if init is not None:
        start = procfs.proc_starttime(init)
        if start is not None:
            procfs.signal_exact(init, start, signal.SIGKILL)


def machine_processes(machine_dir: Path) -> dict[int, int]:
    """pid -> start time of every live process of the machine: the recorded systemd-nspawn,
    any other systemd-nspawn process of this machine's root (nspawn forks helpers that keep
    its command line), and every process in the container's PID namespace."""
    found: dict[int, int] = {}
    proc = running(machine_dir)
    if proc is not None:
        found[proc.pid] = proc.starttime
        init = procfs.container_init(proc.pid)
        if init is not None:
            found.update((p, st.starttime) for p, st in procfs.namespace_processes(init).items())
    root_arg = f"--directory={machine_dir / 'root'}".encode()
    for pid, st in procfs.live_processes():
        argv = procfs.read_cmdline(pid)
        if argv and argv[0].endswith(NSPAWN) and root_arg in argv:
            found[pid] = st.starttime
    return found
