"""What the lab tests ask about the VIP (spec.loadBalancer.vip): who holds it, asked in
each load balancer's network namespace from this host (fast, and a frozen machine's kernel
still answers; a dead machine's namespace keeps what its interface had, as a crashed
keepalived would)."""

from __future__ import annotations

import subprocess
import time
from typing import Protocol

import psycopg

from pgha_operator.shell.providers.nspawn_net import LabNetwork, netns_path

VIP = "10.231.0.250"
BALANCERS = ("haproxy1", "haproxy2")


class Provider(Protocol):
    net: LabNetwork


class SshLab(Protocol):
    provider: Provider

    def dsn(self, role: str) -> str: ...


def holders(lab: SshLab, machines: tuple[str, ...] = BALANCERS) -> list[str]:
    """The load balancers whose eth0 carries the VIP."""
    found = []
    for m in machines:
        netns = netns_path(lab.provider.net.machine_ns(m))
        argv = ["nsenter", f"--net={netns}", "ip", "-o", "-4", "addr", "show", "dev", "eth0"]
        res = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        if f" {VIP}/" in res.stdout:
            found.append(m)
    return found


def write_through_vip(lab: SshLab, row: int, note: str, timeout: float = 30) -> None:
    """INSERT through VIP:5000, retrying until `timeout` (the VIP may be moving)."""
    dsn = lab.dsn("primary") + " connect_timeout=3"
    assert f"host={VIP} port=5000" in dsn, dsn
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("INSERT INTO lab_rows VALUES (%s, %s)", (row, note))
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def holder_changes(lab: SshLab, seconds: float, machines: tuple[str, ...] = BALANCERS) -> list:
    """Who held the VIP, sampled for `seconds`: the list of distinct successive holders."""
    seen: list[tuple[str, ...]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        now = tuple(holders(lab, machines))
        if not seen or seen[-1] != now:
            seen.append(now)
        time.sleep(0.1)
    return seen
