"""The load balancer drills' pure parts: the VIP's holder from the ARP table, its moves."""

from __future__ import annotations

import time
from pathlib import Path

from pgha_operator.drill.faults import FAULTS
from pgha_operator.drill.vip_watch import VipChange, VipWatcher, arp_entry, link_mac, moves
from pgha_operator.shell.providers.base import Fencing, Freezing

TABLE = """\
IP address       HW type     Flags       HW address            Mask     Device
10.231.0.11      0x1         0x2         aa:bb:cc:00:00:11     *        pgha1a2b3c4d
10.231.0.250     0x1         0x2         AA:BB:CC:00:02:01     *        pgha1a2b3c4d
10.231.0.99      0x1         0x0         00:00:00:00:00:00     *        pgha1a2b3c4d
"""


def test_the_vip_resolves_to_the_mac_of_a_complete_entry_only() -> None:
    assert arp_entry(TABLE, "10.231.0.250") == "aa:bb:cc:00:02:01"
    assert arp_entry(TABLE, "10.231.0.99") is None  # incomplete: nobody answered
    assert arp_entry(TABLE, "10.231.0.7") is None


def test_moves_are_changes_to_a_machine_after_a_moment() -> None:
    changes = [VipChange(1.0, "haproxy1"), VipChange(2.0, None), VipChange(2.5, "haproxy2")]
    assert moves(changes, 1.5) == [VipChange(2.5, "haproxy2")]
    assert moves(changes, 0.0) == [changes[0], changes[2]]


def test_the_watcher_records_each_change_of_holder(tmp_path: Path) -> None:
    table = tmp_path / "arp"
    table.write_text(TABLE)
    macs = {"aa:bb:cc:00:02:01": "haproxy1", "aa:bb:cc:00:02:02": "haproxy2"}
    watcher = VipWatcher("10.231.0.250", macs, table)
    watcher.start()
    try:
        deadline = time.monotonic() + 30
        while watcher.now() != "haproxy1" and time.monotonic() < deadline:
            time.sleep(0.01)
        # Replaced whole, as the kernel's table reads: a half-written file read by the
        # watcher would be a third "change" (nobody holds it) and the test would flake.
        moved = tmp_path / "arp.new"
        moved.write_text(TABLE.replace("AA:BB:CC:00:02:01", "aa:bb:cc:00:02:02"))
        moved.replace(table)
        while watcher.now() != "haproxy2" and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        watcher.stop()
    assert [c.machine for c in watcher.changes] == ["haproxy1", "haproxy2"]


def test_both_load_balancer_scenarios_are_registered_with_their_capability() -> None:
    assert FAULTS["crash-loadbalancer"].needs is Fencing
    assert FAULTS["freeze-loadbalancer"].needs is Freezing


def test_the_mac_is_read_from_ip_link() -> None:
    line = (
        "2: eth0@if7: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode "
        "DEFAULT group default qlen 1000\\    link/ether DA:2B:EE:0B:15:31 brd ff:ff:ff:ff:ff:ff "
        "link-netnsid 0\n"
    )
    assert link_mac(line) == "da:2b:ee:0b:15:31"
