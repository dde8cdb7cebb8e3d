"""`apply`'s pause between two cycles while the cluster waits for a primary.

A new cluster's first write waits on the cycle that sees its primary (that cycle makes the
app's role and database). Patroni finishes its bootstrap at no particular moment, so a
plain pause of BUSY_SECONDS left the primary unseen for up to that long, and the first
write with it. While Patroni runs but no node answers as primary, the pause instead asks
each such node `GET /primary` every PRIMARY_POLL_SECONDS (one TLS handshake each, the
fencer's probe) and ends as soon as one answers 200: the next cycle observes everything
again and plans from what it sees, as any cycle does. Otherwise the pause is a sleep.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from pgha_operator.core.facts.observed import Observed
from pgha_operator.core.services import ServiceState
from pgha_operator.core.topology import Topology
from pgha_operator.shell.clients import Clients, ComponentError
from pgha_operator.shell.clients.transport import READERS

PRIMARY_POLL_SECONDS = 0.1
# A node still starting may take the connection and answer late: it is asked again at the
# next poll, and a poll never holds the pause past its delay.
PROBE_TIMEOUT = 0.2


def awaited_primaries(observed: Observed, topology: Topology) -> list[str]:
    """The manifest's nodes whose Patroni runs while none answers as primary: one of them
    is about to be (a bootstrap, a failover). Empty when a primary answered."""
    if observed.patroni.primaries:
        return []
    return [
        node
        for node in topology.postgres
        if observed.service(node, "patroni") == ServiceState.RUNNING
    ]


def pause_for_next_cycle(
    clients: Clients,
    topology: Topology,
    observed: Observed,
    delay: float,
    sleep: Callable[[float], None] | None = None,
) -> bool:
    """Wait `delay` seconds, or less when a primary answers meanwhile (True then).
    `sleep`: time.sleep as it is when called (tests replace it)."""
    sleep = sleep or time.sleep
    nodes = awaited_primaries(observed, topology)
    if not nodes:
        sleep(delay)
        return False
    return wait_for_a_primary(clients, [topology.rest_api_url(n) for n in nodes], delay, sleep)


def wait_for_a_primary(
    clients: Clients,
    api_urls: Sequence[str],
    delay: float,
    sleep: Callable[[float], None],
) -> bool:
    """Ask the nodes `GET /primary` (together) every PRIMARY_POLL_SECONDS for at most
    `delay` seconds; True as soon as one answers 200. Bounded by the clock and by a count
    of polls (tests' sleeps move a fake world, not the clock)."""
    deadline = time.monotonic() + delay
    apis = [clients.patroni(url, timeout=PROBE_TIMEOUT) for url in api_urls]
    for _ in range(max(1, round(delay / PRIMARY_POLL_SECONDS))):
        if any(READERS.map(lambda api: _answers_primary(api.is_primary), apis)):
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        sleep(min(PRIMARY_POLL_SECONDS, left))
    return False


def _answers_primary(is_primary: Callable[[], bool]) -> bool:
    try:
        return is_primary()
    except ComponentError:  # not listening yet, or busy: asked again next poll
        return False
