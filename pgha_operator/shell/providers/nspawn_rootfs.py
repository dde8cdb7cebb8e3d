"""The Debian 12 root filesystem every nspawn machine boots from: built once with debootstrap,
cached outside the repository, shared read-only (each machine is an overlay on top of it).

The cache key is a hash of the recipe (suite, packages, Patroni pins, setup script), so a
changed recipe builds a new rootfs beside the old one, which machines still using it keep.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from pgha_operator.core.errors import PermanentError
from pgha_operator.shell.providers.packages import (
    DEBIAN_PATRONI_PACKAGES,
    DEBIAN_PATRONI_UNITS,
    PATRONI_VENV,
    patroni_requirements,
)

SUITE = "bookworm"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# What every machine needs: systemd and sshd, and every package of every role.
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "python3-venv",
    "iproute2",
    "netbase",
    "sudo",
    "procps",
    "postgresql-15",
    "etcd-server",
    "etcd-client",
    "haproxy",
    "keepalived",  # spec.loadBalancer.vip
    # spec.patroni.source "debian": the machines have no network to fetch it later.
    *DEBIAN_PATRONI_PACKAGES,
)
# Debian's own units for our daemons would fight ours for ports, sockets and
# /etc/haproxy/haproxy.cfg; apt's timers would reach for a network the machines do not have.
MASKED_UNITS = (
    "etcd.service",
    "haproxy.service",
    "keepalived.service",
    "postgresql.service",
    *DEBIAN_PATRONI_UNITS,
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
)
SSHD_CONFIG = """\
# pgha-operator: each machine gets its own host key (generated and recorded by the operator
# when it creates the machine) and only key logins.
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
"""
WHEELS_IN_ROOTFS = "/var/tmp/pgha-wheels"
STAMP = ".pgha-rootfs.json"
BUILD_TIMEOUT = 1800.0


def _setup_script(requirements: tuple[str, ...]) -> str:
    masks = " ".join(f"/etc/systemd/system/{u}" for u in MASKED_UNITS)
    reqs = " ".join(f"'{r}'" for r in requirements)
    return f"""set -eu
: > /etc/fstab
for unit in {masks}; do ln -sf /dev/null "$unit"; done
# postgresql-common made a cluster 15/main at install; Patroni owns PostgreSQL here.
if [ -d /etc/postgresql/15/main ]; then pg_dropcluster 15 main; fi
install -d -o postgres -g postgres -m 0755 /var/lib/postgresql/15
rm -f /etc/ssh/ssh_host_*
install -d -m 0755 /etc/ssh/sshd_config.d
cat > /etc/ssh/sshd_config.d/pgha.conf <<'EOF'
{SSHD_CONFIG}EOF
/usr/bin/python3 -m venv {PATRONI_VENV}
{PATRONI_VENV}/bin/pip install -q --no-index --find-links {WHEELS_IN_ROOTFS} {reqs}
chmod -R a+rX /opt/pgha-operator
# Per-machine identity comes from the overlay: machine-id, hostname, host keys.
: > /etc/machine-id
rm -f /etc/hostname
apt-get clean
rm -rf /var/lib/apt/lists/* {WHEELS_IN_ROOTFS}
"""


def recipe_key() -> str:
    requirements = patroni_requirements()
    recipe = json.dumps(
        {
            "suite": SUITE,
            "packages": PACKAGES,
            "script": _setup_script(requirements),
        },
        sort_keys=True,
    )
    return f"{SUITE}-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"


def rootfs_path(cache: str | Path) -> Path:
    return Path(cache) / recipe_key()


def is_built(path: Path) -> bool:
    return (path / STAMP).is_file()


# --- the Debian mirror ---------------------------------------------------------------------


def debian_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian archive this machine's apt uses (PGHA_DEBIAN_MIRROR overrides)."""
    override = os.environ.get("PGHA_DEBIAN_MIRROR")
    if override:
        return override
    for uri, suites, components in _apt_sources(apt_dir):
        if SUITE in suites and "main" in components and uri.startswith(("http://", "https://")):
            return uri
    raise PermanentError(
        f"no Debian {SUITE} mirror with 'main' in {apt_dir}/sources.list(.d); set "
        "PGHA_DEBIAN_MIRROR to one (e.g. http://deb.debian.org/debian)"
    )


def _apt_sources(apt_dir: Path) -> Iterator[tuple[str, list[str], list[str]]]:
    files = [apt_dir / "sources.list"]
    d = apt_dir / "sources.list.d"
    if d.is_dir():
        files += sorted(p for p in d.iterdir() if p.suffix in (".list", ".sources"))
    for f in files:
        if not f.is_file():
            continue
        text = f.read_text(errors="replace")
        if f.suffix == ".sources":
            yield from parse_deb822_sources(text)
        else:
            yield from parse_one_line_sources(text)


def parse_one_line_sources(text: str) -> Iterator[tuple[str, list[str], list[str]]]:
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        words = words[1:]
        if words and words[0].startswith("["):  # options: [signed-by=... arch=...]
            while words and not words[0].endswith("]"):
                words = words[1:]
            words = words[1:]
        if len(words) >= 2:
            yield words[0].rstrip("/"), [words[1]], words[2:]


def parse_deb822_sources(text: str) -> Iterator[tuple[str, list[str], list[str]]]:
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            yield (
                uri.rstrip("/"),
                fields.get("suites", "").split(),
                fields.get("components", "").split(),
            )


# --- building ------------------------------------------------------------------------------


def ensure_rootfs(cache: str | Path, log: Path | None = None) -> Path:
    """The cached rootfs, built first when absent (one builder at a time, atomically)."""
    final = rootfs_path(cache)
    if is_built(final):
        return final
    if os.geteuid() != 0:
        raise PermanentError("building the nspawn rootfs needs root (debootstrap)")
    for tool in ("debootstrap", "systemd-nspawn"):
        if not shutil.which(tool):
            raise PermanentError(
                f"{tool} not found: apt-get install debootstrap systemd-container (make setup)"
            )
    final.parent.mkdir(parents=True, exist_ok=True)
    with _build_lock(final.parent):
        if is_built(final):  # another process built it while we waited
            return final
        build = Path(tempfile.mkdtemp(prefix=f".build-{final.name}-", dir=final.parent))
        try:
            _build(build, log)
            _stamp(build, final.name)
            os.rename(build, final)
        except BaseException:
            shutil.rmtree(build, ignore_errors=True)
            raise
    return final


@contextlib.contextmanager
def _build_lock(cache: Path) -> Iterator[None]:
    with open(cache / ".build.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run(argv: list[str], log: Path | None, what: str) -> None:
    with contextlib.ExitStack() as stack:
        out: IO[str] | int = subprocess.DEVNULL
        if log:
            out = stack.enter_context(open(log, "a"))
            print(f"--- {time.strftime('%H:%M:%S')} {' '.join(argv)}", file=out, flush=True)
        try:
            res = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT if log else subprocess.PIPE,
                timeout=BUILD_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise PermanentError(f"{what} timed out after {BUILD_TIMEOUT:.0f} s") from None
    if res.returncode != 0:
        detail = f"see {log}" if log else (res.stderr or b"").decode(errors="replace")[-2000:]
        raise PermanentError(f"{what} failed (exit {res.returncode}): {detail}")


def _build(target: Path, log: Path | None) -> None:
    target.chmod(0o755)
    mirror = debian_mirror()
    argv = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
    ]
    if Path(KEYRING).exists():
        argv.append(f"--keyring={KEYRING}")
    try:
        _run([*argv, SUITE, str(target), mirror], log, f"debootstrap from {mirror}")
    except PermanentError:
        # A mirror hiccup (a truncated download) should not cost a CI run: once more, clean.
        shutil.rmtree(target)
        target.mkdir(mode=0o755)
        _run([*argv, SUITE, str(target), mirror], log, f"debootstrap from {mirror}")
    # Patroni's wheels come through this machine's own pip configuration (its index or
    # mirror); the rootfs installs them offline.
    wheels = target / WHEELS_IN_ROOTFS.lstrip("/")
    wheels.mkdir(parents=True, exist_ok=True)
    requirements = patroni_requirements()
    _run(
        [sys.executable, "-m", "pip", "download", "-q", "-d", str(wheels), *requirements],
        log,
        "pip download of Patroni",
    )
    _run(
        [
            "systemd-nspawn",
            "-q",
            "-D",
            str(target),
            "--register=no",
            "--keep-unit",
            "--private-network",  # the setup needs no network
            "--resolv-conf=off",
            "--timezone=off",
            "--link-journal=no",
            "--pipe",
            "/bin/sh",
            "-c",
            _setup_script(requirements),
        ],
        log,
        "rootfs setup (nspawn)",
    )


def _stamp(target: Path, key: str) -> None:
    info = {
        "key": key,
        "suite": SUITE,
        "packages": list(PACKAGES),
        "patroni": list(patroni_requirements()),
        "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (target / STAMP).write_text(json.dumps(info, indent=2) + "\n")
