"""The load balancers' side of a fence: take the dead primary out of every HAProxy at once
and put the member that takes the released key in, instead of waiting for their health
checks (until then HAProxy keeps sending new connections to the dead server, and finds
the new primary only at its next `downinter` check).

Through HAProxy's runtime API, where the provider lets the operator reach the admin
sockets (`HostSockets`: local). A failure only costs time: the checks do the same later.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import structlog

from pgha_operator.core.conditions import PRIMARY_BACKEND, REPLICAS_BACKEND
from pgha_operator.shell.clients import ComponentError
from pgha_operator.shell.clients.haproxy_runtime import mark_down, mark_up
from pgha_operator.shell.providers.base import HostSockets, Provider, capability

log = structlog.get_logger("pgha-operator")

NEW_LEADER_WAIT = 1.0  # seconds the fencer looks for the member that takes the key
NEW_LEADER_POLL = 0.01


def _sockets(provider: Provider, lbs: Sequence[str]) -> list[str]:
    sockets = capability(provider, HostSockets)
    if sockets is None:
        return []
    return [sockets.host_path(lb, provider.layout(lb).haproxy_socket) for lb in lbs]


def out_of_load_balancers(provider: Provider, lbs: Sequence[str], node: str) -> None:
    """Force `node` DOWN in both backends of every HAProxy (its own checks take over from
    there: a server that answers them comes back)."""
    for path in _sockets(provider, lbs):
        try:
            mark_down(path, [PRIMARY_BACKEND, REPLICAS_BACKEND], node)
        except ComponentError as exc:
            log.info("load balancer not told", error=str(exc))


def route_to_new_leader(
    provider: Provider, lbs: Sequence[str], old: str, holder: Callable[[], str | None]
) -> str | None:
    """Once a member other than `old` holds the leader key (`holder` reads it), mark it UP
    in every HAProxy's primary backend: exactly what its next check would find (Patroni
    answers /primary 200 once it holds the key), up to `downinter` sooner. The member, or
    None when none took the key within NEW_LEADER_WAIT (nothing is marked then)."""
    paths = _sockets(provider, lbs)
    if not paths:
        return None
    deadline = time.monotonic() + NEW_LEADER_WAIT
    new = None
    while new is None and time.monotonic() < deadline:
        found = holder()
        if found is not None and found != old:
            new = found
        else:
            time.sleep(NEW_LEADER_POLL)
    if new is None:
        return None
    for path in paths:
        try:
            mark_up(path, PRIMARY_BACKEND, new)
        except ComponentError as exc:
            log.info("load balancer not told", error=str(exc))
    return new
