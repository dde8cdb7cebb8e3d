"""The operator's loop against a fake world: the real observe -> plan -> execute, then one
cycle of time. `run_cycle` is what bench/cycle.py times; `converge` is what tests call."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pgha_operator.core import conditions as cond
from pgha_operator.core.actions import Action
from pgha_operator.core.facts.observed import Observed
from pgha_operator.core.plan import Desired, Plan, plan
from pgha_operator.shell.execute import Env, Outcome, execute
from pgha_operator.shell.observe import observe
from tests.fakeworld.world import FakeWorld


@dataclass
class Cycle:
    time: int
    observed: Observed
    plan: Plan
    outcome: Outcome
    attempted: tuple[Action, ...] = ()  # what execute started: done, and the one that failed

    phase: str = ""  # the status phase the controller would report

    @property
    def quiet(self) -> bool:
        """Converged: nothing to do, nothing failed, every condition true."""
        return self.phase == "Converged" and self.outcome.error is None


def env_for(world: FakeWorld, desired: Desired) -> Env:
    return Env(
        desired.cluster,
        desired.topology,
        world.provider,
        world.binaries,
        secrets=world.secrets,
        check_ports=False,
        clients=world.clients(),
    )


def observe_world(world: FakeWorld, desired: Desired) -> Observed:
    return observe(desired, world.provider, world.secrets, clients=world.clients())


def run_cycle(
    world: FakeWorld,
    desired: Desired,
    before_execute: Callable[[FakeWorld, Observed, Plan], None] | None = None,
    act: bool = True,
) -> Cycle:
    """One loop iteration, then one cycle of time in the world."""
    observed = observe_world(world, desired)
    the_plan = plan(desired, observed)
    if before_execute:
        before_execute(world, observed, the_plan)
    attempted: list[Action] = []
    outcome = Outcome()
    actions = the_plan.actions
    if actions and world.faults.hit("operator_dies", f"during {the_plan.decision}"):
        actions = actions[: world.faults.rng.randrange(len(actions))]
    if act and actions:
        outcome = execute(actions, env_for(world, desired), attempted.append)
    phase = cond.phase(cond.assess(desired, observed), the_plan)
    cycle = Cycle(world.time, observed, the_plan, outcome, tuple(attempted), phase)
    world.tick()
    return cycle


class NotConverged(AssertionError):
    pass


@dataclass
class Run:
    cycles: list[Cycle] = field(default_factory=list)

    def story(self, last: int = 12) -> str:
        """The last cycles' decisions, for a failure message."""
        lines = []
        for c in self.cycles[-last:]:
            error = f"  ERROR {c.outcome.error}" if c.outcome.error else ""
            lines.append(f"t={c.time} {c.phase}: {c.plan.decision}{error}")
        return "\n".join(lines)


def converge(
    world: FakeWorld,
    desired: Desired,
    max_cycles: int,
    check: Callable[[FakeWorld, Cycle], None] | None = None,
    quiet_for: int = 2,
    before_execute: Callable[[FakeWorld, Observed, Plan], None] | None = None,
) -> Run:
    """Cycle until the phase stays Converged for `quiet_for` cycles in a row; NotConverged after
    `max_cycles`. `check` runs after every cycle (safety invariants)."""
    run = Run()
    streak = 0
    for _ in range(max_cycles):
        cycle = run_cycle(world, desired, before_execute)
        run.cycles.append(cycle)
        if check:
            check(world, cycle)
        streak = streak + 1 if cycle.quiet else 0
        if streak >= quiet_for:
            return run
    faults = "; ".join(world.faults.injected[-8:])
    raise NotConverged(
        f"not converged after {max_cycles} cycles (faults: {faults or 'none'}):\n{run.story()}"
    )
