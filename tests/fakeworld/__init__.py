"""An in-memory world for the operator's real loop (docs/architecture.md, "The fake world").

world = FakeWorld.for_cluster(cluster)          # empty: no machines yet
world = converged_world(cluster)                # built by the operator itself
observe(desired, world.provider, world.secrets, clients=world.clients())
world.tick()                                    # one cycle of time passes
"""

from __future__ import annotations

from pgha_operator.core.spec import Cluster
from tests.fakeworld.faults import Faults
from tests.fakeworld.loop import converge, run_cycle
from tests.fakeworld.world import FakeWorld

__all__ = ["FakeWorld", "Faults", "converge", "converged_world", "run_cycle"]


def converged_world(cluster: Cluster, seed: int = 0, max_cycles: int = 80) -> FakeWorld:
    """A healthy world for `cluster`, reached by the real loop from nothing (no faults)."""
    world = FakeWorld.for_cluster(cluster, seed=seed)
    converge(world, world.desired(), max_cycles)
    return world
