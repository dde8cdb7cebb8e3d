"""Seeded faults: actions that fail or half-apply, drawn from one random source so a failing
run replays exactly from its seed."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

# What can go wrong, and where the world asks:
#   write         the file is not written (the host call failed)
#   start_error   the start call fails, nothing runs
#   start_dies    the service starts, then dies before the next cycle
#   reload_lost   the reload call fails: the file is new, the service runs the old config
#   call_lost     an HTTP call times out before the component acted
#   call_late     an HTTP call times out after the component acted
#   rewind_fails  a demoted primary cannot rejoin (Patroni's "start failed")
#   operator_dies the operator dies in the middle of a plan (the rest is not executed)
KINDS = (
    "write",
    "start_error",
    "start_dies",
    "reload_lost",
    "call_lost",
    "call_late",
    "rewind_fails",
    "operator_dies",
)


@dataclass
class Faults:
    seed: int = 0
    rate: float = 0.0  # probability that one eligible call goes wrong
    kinds: frozenset[str] = frozenset(KINDS)
    active: bool = True  # tests switch faults off to see the loop converge afterwards
    injected: list[str] = field(default_factory=list)  # what went wrong, for failure reports
    # Targeted faults, each striking once: "<kind>: <where>", e.g.
    # "write: write node2:/etc/pgha/demo/patroni.yml" or "call_lost: POST /switchover".
    fail_once: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def hit(self, kind: str, where: str) -> bool:
        what = f"{kind}: {where}"
        target = next((t for t in self.fail_once if what.startswith(t)), None)
        if target is not None:
            self.fail_once.remove(target)
            self.injected.append(what)
            return True
        if not self.active or kind not in self.kinds or self.rate <= 0:
            return False
        if self.rng.random() >= self.rate:
            return False
        self.injected.append(what)
        return True

    def delay(self, low: int, high: int) -> int:
        """How many cycles something takes: drawn from the same seeded source."""
        return self.rng.randint(low, high)
