"""What the fencer asks the provider before a decision: its own view of the leader's
machine (settled after a reported death), and whether a replica's own network still
reaches the leader (a running leader is fenced only when every answering replica lost it)."""

from __future__ import annotations

import time

from pgha_operator.core.facts.types import MachineState
from pgha_operator.core.topology import Topology
from pgha_operator.shell.providers.base import MachineStates, PeerReach

# Seconds a replica's TCP connection to the leader may take: on a LAN a live machine's
# kernel answers a SYN in well under a millisecond, loaded or not.
PEER_TIMEOUT = 0.3


def settled_state(states: MachineStates, name: str, settle: float) -> MachineState:
    """The provider's view; after a reported death, given up to `settle` seconds to show
    it (a dead postmaster's last children take a moment to exit)."""
    deadline = time.monotonic() + settle
    while True:
        state = states.machine_state(name)
        if state in (MachineState.DEAD, MachineState.FROZEN) or time.monotonic() >= deadline:
            return state
        time.sleep(0.01)


def lost_leader(reach: PeerReach, topo: Topology, node: str, leader: str) -> bool:
    """`node`'s own network cannot reach the leader's PostgreSQL (its walreceiver's path):
    a refusal or an answer is contact; a probe that could not run is no proof."""
    return reach.reaches(node, topo.address(leader), topo.pg_port, PEER_TIMEOUT) is False
