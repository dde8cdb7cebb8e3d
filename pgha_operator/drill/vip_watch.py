"""Who holds the VIP (spec.loadBalancer.vip), asked two ways.

- `vip_holders`: each load balancer is asked over its Host whether its interface carries
  the VIP (`ip -o -4 addr show dev IF`): the truth of the machines, for before and after a
  fault (a dead or frozen machine does not answer).
- `VipWatcher`: where this host sends the VIP's packets, from its own ARP table
  (/proc/net/arp), every 10 ms: the machine whose MAC the VIP resolves to. That is what
  clients on the network see, and it changes when the new holder's gratuitous ARP arrives.
  It needs this host on the load balancers' network (nspawn's bridge, Vagrant's private
  network); elsewhere it sees nothing and the drill says so.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pgha_operator.core.vip import vip_interface
from pgha_operator.drill.background import BackgroundLoop
from pgha_operator.drill.target import DrillError, Target
from pgha_operator.shell.hosts.base import HostError

ARP_TABLE = Path("/proc/net/arp")
INTERVAL = 0.01
ASK_TIMEOUT = 5.0


def vip_address(target: Target) -> str:
    vip = target.cluster.spec.load_balancer.vip
    if vip is None:
        raise DrillError(
            f"cluster {target.cluster.name} has no spec.loadBalancer.vip: the load balancer "
            "drills move a VIP between two or more HAProxy machines"
        )
    return str(vip.address)


def vip_holders(target: Target, machines: Sequence[str] | None = None) -> list[str]:
    """The load balancers whose interface carries the VIP now (those that answer)."""
    vip, iface = vip_address(target), vip_interface(target.cluster.spec)
    held = []
    for name in machines or target.topology.loadbalancers:
        with contextlib.suppress(HostError, OSError):
            res = target.provider.host(name).run(
                ["ip", "-o", "-4", "addr", "show", "dev", iface], timeout=ASK_TIMEOUT, check=False
            )
            if f" {vip}/" in res.stdout:
                held.append(name)
    return held


def machine_macs(target: Target) -> dict[str, str]:
    """MAC address of each load balancer's VIP interface -> its name."""
    iface = vip_interface(target.cluster.spec)
    macs = {}
    for name in target.topology.loadbalancers:
        # Asked over netlink: a container's /sys/class/net may show another namespace's.
        res = target.provider.host(name).run(["ip", "-o", "link", "show", "dev", iface])
        macs[link_mac(res.stdout)] = name
    return macs


def link_mac(ip_link: str) -> str:
    """The MAC in `ip -o link show dev IF`'s line ('... link/ether aa:bb:... brd ...')."""
    words = ip_link.split()
    return words[words.index("link/ether") + 1].lower()


def arp_entry(table: str, address: str) -> str | None:
    """The complete entry's MAC for `address` in /proc/net/arp's text, or None."""
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 4 and fields[0] == address and int(fields[2], 16) & 0x2:
            return fields[3].lower()
    return None


@dataclass(frozen=True)
class VipChange:
    at: float  # time.monotonic()
    machine: str | None  # None: no entry, or a MAC no load balancer has


def moves(changes: Sequence[VipChange], after: float) -> list[VipChange]:
    """The changes to a machine (not to 'no entry') at or after `after`."""
    return [c for c in changes if c.at >= after and c.machine is not None]


class VipWatcher(BackgroundLoop):
    """Records every change of the machine the VIP resolves to on this host."""

    THREAD_NAME = "vip-watcher"

    def __init__(self, address: str, macs: dict[str, str], table: Path = ARP_TABLE) -> None:
        super().__init__()
        self.address = address
        self.macs = macs
        self.table = table
        self.changes: list[VipChange] = []

    def now(self) -> str | None:
        return self.changes[-1].machine if self.changes else None

    def _loop(self) -> None:
        last: object = object()  # nothing recorded yet
        while not self._stop.is_set():
            try:
                mac = arp_entry(self.table.read_text(), self.address)
            except OSError:
                mac = None
            machine = self.macs.get(mac) if mac else None
            if machine != last:
                self.changes.append(VipChange(time.monotonic(), machine))
                last = machine
            self._stop.wait(INTERVAL)
