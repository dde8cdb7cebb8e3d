"""The load balancer faults (spec.loadBalancer.vip): the machine holding the VIP is killed,
or frozen, while the writers write through the VIP.

- crash-loadbalancer: the holder's link is cut and its power with it (on nspawn a dead
  machine's network namespace outlives it and would still answer for its addresses, and
  its kernel would close the dead HAProxy's connections; a real power cut does neither),
  held until the VIP answers from another machine and writes flow again, plus a second.
  The operator then boots the machine again (keepalived there stays BACKUP: nopreempt).
- freeze-loadbalancer: every process of the holder stopped (SIGSTOP), held likewise, then
  resumed; the VIP is then watched for FLAP_WATCH seconds: it may move back once (a
  resumed master of higher priority reclaims it), never more.

Both print when the VIP moved (this host's ARP table: what clients on the network see)
and keep the VIP's moves beside the run's log (<state dir>/drill/<scenario>-...-vip.json).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import structlog

from pgha_operator.drill.checker import FaultWindow
from pgha_operator.drill.target import DrillError, Live, Target
from pgha_operator.drill.vip_watch import (
    VipWatcher,
    machine_macs,
    moves,
    vip_address,
    vip_holders,
)
from pgha_operator.shell.providers.base import Fencing, Freezing, Isolation, capability
from pgha_operator.shell.state import clear_down, mark_down

log = structlog.get_logger("pgha-drill")

HOLD_LIMIT = 30.0  # seconds a fault is held at most when the VIP does not move
SETTLE = 1.0  # seconds the fault is held after writes flow through the new holder
FLAP_WATCH = 5.0  # seconds the VIP is watched after a frozen holder resumes
MARK_MARGIN = 120.0  # a down mark outlives the hold by this much, then expires
SEEN_TIMEOUT = 5.0  # for this host's ARP entry of the VIP to name the holder


@dataclass
class _Run:
    """One load balancer fault in progress: the holder, the watcher, when it started."""

    target: Target
    live: Live
    holder: str
    watcher: VipWatcher
    started: float = 0.0

    @classmethod
    def begin(cls, target: Target, live: Live) -> _Run:
        vip = vip_address(target)
        holders = vip_holders(target)
        if len(holders) != 1:
            raise DrillError(f"expected one machine holding the VIP {vip}, found {holders}")
        watcher = VipWatcher(vip, machine_macs(target))
        watcher.start()
        run = cls(target, live, holders[0], watcher)
        if not live.wait_for(lambda: watcher.now() == run.holder, SEEN_TIMEOUT):
            log.warning("this host's ARP table does not name the VIP's holder", vip=vip)
        run.started = time.monotonic()
        return run

    def moved_at(self) -> float | None:
        """When the VIP first resolved to another machine after the fault started."""
        away = [c for c in moves(self.watcher.changes, self.started) if c.machine != self.holder]
        return away[0].at if away else None

    def hold(self, seconds: float | None) -> None:
        """`seconds`, or until the VIP moved and a write went through after it (+ SETTLE)."""
        if seconds is not None:
            time.sleep(seconds)
            return

        def through_new_holder() -> bool:
            moved = self.moved_at()
            return moved is not None and (self.live.writer.last_ok() or 0) > moved

        if self.live.wait_for(through_new_holder, HOLD_LIMIT):
            time.sleep(SETTLE)

    def window(self, scenario: str, healed: float) -> FaultWindow:
        primary = self.live.primary()
        return FaultWindow(
            scenario,
            self.started,
            healed,
            old_primary=primary,
            old_primary_address=self.target.topology.address(primary),
            targets=(self.holder,),
            recovery_from=self.started,
        )

    def report(self, scenario: str, after: float | None = None) -> None:
        """Log when the VIP moved (and how often after `after`) and keep its changes."""
        self.watcher.stop()
        moved = self.moved_at()

        def rel(t: float | None) -> float | None:
            return None if t is None else round(t - self.started, 3)

        later = moves(self.watcher.changes, after) if after is not None else []
        figures = {
            "scenario": scenario,
            "holder": self.holder,
            "vipMovedSeconds": rel(moved),
            "movedTo": next((c.machine for c in self.watcher.changes if c.at == moved), None),
            "movesAfterResume": len(later),
            "changes": [[rel(c.at), c.machine] for c in self.watcher.changes],
        }
        log.info("vip", **{k: v for k, v in figures.items() if k != "changes"})
        if len(later) > 1:
            log.warning("the VIP flapped after the machine resumed", moves=len(later))
        _save(self.target, scenario, figures)


def _save(target: Target, scenario: str, figures: dict) -> None:
    folder = target.state_dir / "drill"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{scenario}-{int(time.time())}-vip.json"
    path.write_text(json.dumps(figures, indent=1) + "\n")


def _needs(target: Target, cap: type) -> object:
    found = capability(target.provider, cap)
    if found is None:
        raise DrillError(f"provider {target.provider.kind!r} lacks {cap.__name__}")
    return found


def crash_loadbalancer(target: Target, live: Live, seconds: float | None) -> FaultWindow:
    fencing = _needs(target, Fencing)
    assert isinstance(fencing, Fencing)
    run = _Run.begin(target, live)
    hold = HOLD_LIMIT if seconds is None else seconds
    try:
        # Mark first: a running operator must not boot the machine again during the hold.
        mark_down(target.state_dir, run.holder, hold + MARK_MARGIN, "crash-loadbalancer")
        if (isolation := capability(target.provider, Isolation)) is not None:
            isolation.isolate(run.holder)  # silent on the wire, as a machine without power
        fencing.power_off(run.holder)
        run.hold(seconds)
    finally:
        # The operator boots it again (its link comes back with it).
        clear_down(target.state_dir, run.holder)
    healed = time.monotonic()
    run.report("crash-loadbalancer")
    return run.window("crash-loadbalancer", healed)


def freeze_loadbalancer(target: Target, live: Live, seconds: float | None) -> FaultWindow:
    freezing = _needs(target, Freezing)
    assert isinstance(freezing, Freezing)
    run = _Run.begin(target, live)
    try:
        freezing.freeze(run.holder)
        run.hold(seconds)
    finally:
        # Moves are counted from the first SIGCONT: keepalived may act before all resumed.
        resuming = time.monotonic()
        freezing.thaw(run.holder)  # a hung VM resumes all at once
    healed = time.monotonic()
    time.sleep(FLAP_WATCH)  # the VIP may move back once to the resumed machine, no more
    run.report("freeze-loadbalancer", after=resuming)
    return run.window("freeze-loadbalancer", healed)


# (name, summary, inject, the provider capability it needs): registered in drill/faults.py.
LB_FAULTS = (
    (
        "crash-loadbalancer",
        "the machine holding the VIP goes down hard (its link cut with it) until the VIP "
        "answers from another machine and writes flow again",
        crash_loadbalancer,
        Fencing,
    ),
    (
        "freeze-loadbalancer",
        "SIGSTOP every process of the machine holding the VIP until the VIP moved, then "
        "SIGCONT and watch that it moves at most once more",
        freeze_loadbalancer,
        Freezing,
    ),
)
