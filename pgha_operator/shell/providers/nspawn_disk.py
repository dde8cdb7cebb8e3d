"""An nspawn machine's disk: the overlay of the shared rootfs, and what makes each machine
itself (host key, machine-id, the operator's authorized key, hostname), written into the
overlay before it boots."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import time
from pathlib import Path

from pgha_operator.core.errors import PermanentError
from pgha_operator.shell.providers.sshkeys import ensure_client_key, generate_host_key, pin_host_key


def write_json(path: Path, data: object) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data) + "\n")
    os.replace(tmp, path)


def install(path: Path, data: bytes, mode: int) -> None:
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


def run(argv: list[str], what: str) -> None:
    res = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    if res.returncode != 0:
        raise PermanentError(f"{what} failed: {' '.join(argv)}: {res.stderr.strip()}")


def is_mountpoint(path: Path) -> bool:
    target = str(path)
    try:
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == target for line in f)
    except OSError:
        return False


def mount_overlay(machine_dir: Path, rootfs: Path) -> None:
    """Mount the machine's root: the rootfs below, its own upper/ and work/ above."""
    root = machine_dir / "root"
    if is_mountpoint(root):
        return
    opts = f"lowerdir={rootfs},upperdir={machine_dir / 'upper'},workdir={machine_dir / 'work'}"
    run(["mount", "-t", "overlay", "overlay", "-o", opts, str(root)], "overlay mount")


def umount(path: Path) -> None:
    for _ in range(20):
        res = subprocess.run(["umount", str(path)], capture_output=True, text=True, timeout=60)
        if res.returncode == 0 or not is_mountpoint(path):
            return
        time.sleep(0.25)  # processes of a machine that just stopped may still hold it
    run(["umount", "--lazy", str(path)], "unmount")


def personalise(
    machine_dir: Path, name: str, address: str, known_hosts: Path, client_key: Path
) -> None:
    """Identity that must differ per machine, written into its overlay before boot: host
    key (pinned in known_hosts), machine-id, the operator's authorized key, hostname."""
    root = machine_dir / "root"
    key = machine_dir / "ssh_host_ed25519_key"
    pub = machine_dir / "ssh_host_ed25519_key.pub"
    if not key.exists():
        generate_host_key(key, comment=name)
    pin_host_key(known_hosts, address, pub.read_text())
    install(root / "etc/ssh/ssh_host_ed25519_key", key.read_bytes(), 0o600)
    install(root / "etc/ssh/ssh_host_ed25519_key.pub", pub.read_bytes(), 0o644)
    client_pub = ensure_client_key(client_key)
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    install(ssh_dir / "authorized_keys", client_pub.encode(), 0o600)
    machine_id = root / "etc/machine-id"
    if not machine_id.read_text().strip():
        install(machine_id, (secrets.token_hex(16) + "\n").encode(), 0o444)
    install(root / "etc/hostname", f"{name}\n".encode(), 0o644)


def console_tail(machine_dir: Path, lines: int = 20) -> str:
    try:
        text = (machine_dir / "console.log").read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])
