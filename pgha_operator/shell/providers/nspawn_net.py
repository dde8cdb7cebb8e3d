"""The nspawn lab's network: namespaces and links the provider creates, and nothing else.

    root namespace (the operator)              switch namespace          machine namespaces
    pgha<hash> 10.231.0.1/24  <--veth-->  uplink -+- br0 -+- m<hash> <--veth--> eth0 10.231.0.11
                                                          +- m<hash> <--veth--> eth0 10.231.0.12 ...

Every machine has its own network namespace (/run/netns/pgha-<cluster>.<machine>) that
systemd-nspawn joins. The operator reaches the machines through its own veth end in the
bridge, so all traffic stays on links the provider made. Namespaces are entered with
`nsenter --net=...` (`ip netns exec` remounts /sys, which breaks nspawn).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from pgha_operator.core.errors import PermanentError
from pgha_operator.shell.providers import reach

NETNS_DIR = "/run/netns"
BRIDGE = "br0"
UPLINK_PEER = "uplink"
MACHINE_IF = "eth0"
CMD_TIMEOUT = 30.0


def _short_hash(text: str, n: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


@dataclass(frozen=True)
class LabNetwork:
    cluster: str
    network: IPv4Network
    operator_address: IPv4Address

    @property
    def switch_ns(self) -> str:
        return f"pgha-{self.cluster}_switch"  # "_": never in a machine name

    @property
    def uplink(self) -> str:
        """The operator's end, in the root namespace (interface names: 15 characters)."""
        return f"pgha{_short_hash(self.cluster, 8)}"

    def machine_ns(self, machine: str) -> str:
        return f"pgha-{self.cluster}.{machine}"

    def port(self, machine: str) -> str:
        """The machine's veth end in the switch namespace."""
        return f"m{_short_hash(machine, 12)}"

    def prefixed(self, address: str | IPv4Address) -> str:
        return f"{address}/{self.network.prefixlen}"


def netns_path(name: str) -> str:
    return f"{NETNS_DIR}/{name}"


def netns_exists(name: str) -> bool:
    return os.path.exists(netns_path(name))


def operator_address(network: IPv4Network, used: set[str]) -> IPv4Address:
    """The first host address no machine uses (10.231.0.1 for the shipped manifest)."""
    for address in network.hosts():
        if str(address) not in used:
            return address
    raise PermanentError(f"{network} has no address left for the operator's own link")


def _ip(
    args: list[str], netns: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    argv = ["ip", *args]
    if netns is not None:
        argv = ["nsenter", f"--net={netns_path(netns)}", "--", *argv]
    res = subprocess.run(
        argv, capture_output=True, text=True, timeout=CMD_TIMEOUT, stdin=subprocess.DEVNULL
    )
    if check and res.returncode != 0:
        raise PermanentError(f"{' '.join(argv)} failed: {res.stderr.strip()}")
    return res


def link_exists(name: str, netns: str | None = None) -> bool:
    return _ip(["link", "show", "dev", name], netns, check=False).returncode == 0


def _ensure_netns(name: str) -> None:
    if not netns_exists(name):
        _ip(["netns", "add", name])


def _has_address(dev: str, address: str, netns: str | None = None) -> bool:
    res = _ip(["-j", "addr", "show", "dev", dev], netns, check=False)
    if res.returncode != 0:
        return False
    for link in json.loads(res.stdout or "[]"):
        for info in link.get("addr_info", []):
            if f"{info.get('local')}/{info.get('prefixlen')}" == address:
                return True
    return False


def route_conflicts(net: LabNetwork) -> list[str]:
    """Routes in the root namespace that overlap the lab's network and are not ours: the
    operator's traffic to the machines would go elsewhere."""
    res = _ip(["-j", "route", "show", "table", "all"], check=False)
    conflicts = []
    for route in json.loads(res.stdout or "[]"):
        dst = route.get("dst", "")
        if dst in ("", "default") or route.get("dev") == net.uplink:
            continue
        if route.get("type") in ("local", "broadcast", "multicast"):
            continue
        try:
            other = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            continue
        if other.version == 4 and other.overlaps(net.network):
            conflicts.append(f"{dst} dev {route.get('dev')}")
    return conflicts


def ensure_switch(net: LabNetwork) -> None:
    """The switch namespace with its bridge, and the operator's veth into it."""
    _ensure_netns(net.switch_ns)
    sw = net.switch_ns
    _ip(["link", "set", "lo", "up"], sw)
    if not link_exists(BRIDGE, sw):
        _ip(["link", "add", BRIDGE, "type", "bridge"], sw)
    _ip(["link", "set", BRIDGE, "up"], sw)
    if not link_exists(net.uplink):
        if link_exists(UPLINK_PEER, sw):  # a half-made pair from an interrupted run
            _ip(["link", "del", UPLINK_PEER], sw)
        _ip(["link", "add", net.uplink, "type", "veth", "peer", "name", UPLINK_PEER, "netns", sw])
    _ip(["link", "set", UPLINK_PEER, "master", BRIDGE, "up"], sw)
    address = net.prefixed(net.operator_address)
    if not _has_address(net.uplink, address):
        _ip(["addr", "add", address, "dev", net.uplink])
    _ip(["link", "set", net.uplink, "up"])


def ensure_machine_link(net: LabNetwork, machine: str, address: str) -> None:
    """The machine's namespace, its eth0 wired to the bridge, its static address."""
    mns = net.machine_ns(machine)
    _ensure_netns(mns)
    sw = net.switch_ns
    port = net.port(machine)
    if not link_exists(MACHINE_IF, mns):
        if link_exists(port, sw):
            _ip(["link", "del", port], sw)
        _ip(["link", "add", port, "type", "veth", "peer", "name", MACHINE_IF, "netns", mns], sw)
    _ip(["link", "set", port, "master", BRIDGE, "up"], sw)
    _ip(["link", "set", "lo", "up"], mns)
    if not _has_address(MACHINE_IF, net.prefixed(address), mns):
        _ip(["addr", "flush", "dev", MACHINE_IF], mns)
        _ip(["addr", "add", net.prefixed(address), "dev", MACHINE_IF], mns)
    _ip(["link", "set", MACHINE_IF, "up"], mns)


def set_machine_connected(net: LabNetwork, machine: str, connected: bool) -> None:
    """Cut (or restore) the machine's only link: a network partition for drills."""
    _ip(["link", "set", net.port(machine), "up" if connected else "down"], net.switch_ns)


def machine_connected(net: LabNetwork, machine: str) -> bool:
    """False while the machine's switch port is down (isolate())."""
    res = _ip(["-j", "link", "show", "dev", net.port(machine)], net.switch_ns, check=False)
    if res.returncode != 0:
        return False
    links = json.loads(res.stdout or "[]")
    return bool(links) and "UP" in links[0].get("flags", [])


def remove_machine_link(net: LabNetwork, machine: str) -> None:
    """Deleting the namespace deletes its veth pair (once no process is left inside)."""
    mns = net.machine_ns(machine)
    if netns_exists(net.switch_ns) and link_exists(net.port(machine), net.switch_ns):
        _ip(["link", "del", net.port(machine)], net.switch_ns)
    if netns_exists(mns):
        _ip(["netns", "del", mns])


def remove_switch(net: LabNetwork) -> None:
    if link_exists(net.uplink):
        _ip(["link", "del", net.uplink])
    if netns_exists(net.switch_ns):
        _ip(["netns", "del", net.switch_ns])


def reaches(net: LabNetwork, machine: str, address: str, port: int, timeout: float) -> bool | None:
    """A TCP connection to `address:port` from `machine`'s own network namespace: True when
    it answered, False when not within `timeout`, None when the probe could not run."""
    argv = [
        *("nsenter", f"--net={netns_path(net.machine_ns(machine))}", "--"),
        *reach.argv(sys.executable, address, port, timeout),
    ]
    try:
        res = subprocess.run(
            argv, capture_output=True, timeout=timeout + reach.SLACK, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return reach.result(res.returncode)
