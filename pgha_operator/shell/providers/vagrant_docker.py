"""What Vagrant's docker provider needs beside the Vagrantfile: the box (a Docker image
imported from the nspawn provider's cached Debian 12 rootfs, systemd + sshd inside) and
the cluster's host-only network (`docker network create --internal`: no NAT, no route out).

The Docker engine is the one `DOCKER_HOST` names (the operator starts none: see
scripts/lab-dockerd.sh for one that never forwards or masquerades). Vagrant runs the same
`docker` client with the same environment.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import IO

import structlog

from pgha_operator.core.errors import PermanentError
from pgha_operator.shell.providers.nspawn_rootfs import ensure_rootfs, recipe_key

log = structlog.get_logger("pgha-operator")

IMAGE_REPO = "pgha-operator/debian12"
CMD_TIMEOUT = 120.0
IMPORT_TIMEOUT = 900.0
# A systemd machine in a container without --privileged (this kernel's bounding set lacks
# CAP_SYS_RESOURCE, which --privileged asks for): every other capability, systemd's own
# tmpfs mounts, its own cgroup namespace, and SIGRTMIN+3, systemd's "halt".
RUN_ARGS = (
    "--cap-add=ALL",
    "--cap-drop=SYS_RESOURCE",
    "--security-opt=seccomp=unconfined",
    "--security-opt=apparmor=unconfined",
    "--cgroupns=private",
    "--tmpfs=/run",
    "--tmpfs=/run/lock",
    "--stop-signal=SIGRTMIN+3",
)


def docker(
    *args: str, timeout: float = CMD_TIMEOUT, check: bool = True, stdin: IO[bytes] | None = None
) -> str:
    argv = ["docker", *args]
    try:
        res = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise PermanentError("docker not found: install docker.io (make setup)") from None
    except subprocess.TimeoutExpired:
        raise PermanentError(f"{shlex.join(argv)} timed out after {timeout:.0f} s") from None
    if check and res.returncode != 0:
        raise PermanentError(
            f"{shlex.join(argv)} failed (exit {res.returncode}): {res.stderr.strip()[-800:]}"
        )
    return res.stdout


def preflight() -> None:
    """A Docker engine answers (the one DOCKER_HOST names)."""
    res = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    if res.returncode != 0:
        raise PermanentError(
            "vagrant with vmProvider docker needs a Docker engine, and none answers "
            f"({res.stderr.strip()[-300:]}): start one with `eval $(scripts/lab-dockerd.sh "
            "start)` (see docs/machines.md)"
        )


def image_tag() -> str:
    """The box of this rootfs recipe: a new recipe makes a new image beside the old."""
    return f"{IMAGE_REPO}:{recipe_key()}"


def image_exists(tag: str) -> bool:
    return bool(docker("images", "-q", tag).strip())


def ensure_image(rootfs_cache: str, build_log: Path) -> str:
    """The box, imported once from the cached rootfs (built first when absent)."""
    tag = image_tag()
    if image_exists(tag):
        return tag
    rootfs = ensure_rootfs(rootfs_cache, build_log)
    log.info("importing the docker box from the rootfs", image=tag, rootfs=str(rootfs))
    tar = subprocess.Popen(
        ["tar", "-C", str(rootfs), "--numeric-owner", "-cf", "-", "."],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        docker(
            "import", "-c", 'CMD ["/sbin/init"]', "-", tag, timeout=IMPORT_TIMEOUT, stdin=tar.stdout
        )
    finally:
        if tar.stdout is not None:
            tar.stdout.close()
        tar.wait(timeout=60)
    return tag


def remove_image_if_unused(tag: str) -> bool:
    """Drop the box once no container (of any cluster) is made from it."""
    if not image_exists(tag) or docker("ps", "-aq", "--filter", f"ancestor={tag}").strip():
        return False
    docker("rmi", tag)
    return True


def gateway(network: ipaddress.IPv4Network, taken: Iterable[str]) -> str:
    """The host's address on the network: the first one no machine uses."""
    used = set(taken)
    for address in network.hosts():
        if str(address) not in used:
            return str(address)
    raise PermanentError(f"network {network} has no address left for the host")


def ensure_network(name: str, network: ipaddress.IPv4Network, host_address: str) -> None:
    """The cluster's host-only network: --internal (no route out), no masquerading."""
    out = docker("network", "ls", "-q", "--filter", f"name=^{name}$").strip()
    if out:
        info = json.loads(docker("network", "inspect", name))[0]
        subnets = [c.get("Subnet") for c in info.get("IPAM", {}).get("Config") or []]
        if str(network) not in subnets or not info.get("Internal"):
            raise PermanentError(
                f"docker network {name} exists with subnets {subnets} "
                f"(internal: {info.get('Internal')}); the cluster needs an internal {network}: "
                f"remove it (docker network rm {name})"
            )
        return
    docker(
        "network",
        "create",
        "--internal",
        f"--subnet={network}",
        f"--gateway={host_address}",
        "--opt=com.docker.network.bridge.enable_ip_masquerade=false",
        name,
    )


def remove_network(name: str) -> None:
    if docker("network", "ls", "-q", "--filter", f"name=^{name}$").strip():
        docker("network", "rm", name)


def container_gone(name: str) -> bool:
    return not docker("ps", "-aq", "--filter", f"name=^{name}$").strip()
