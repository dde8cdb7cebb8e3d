"""Tear a cluster down: stop its services on every machine, through the machine's own host
(load balancers first, so clients see the cluster go rather than half of it; etcd last, so
Patroni can still release its leader key), then remove the machines, and return only once
the provider reports none left.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import structlog

from pgha_operator.core.errors import OperatorError
from pgha_operator.shell.hosts.base import HostError
from pgha_operator.shell.providers.base import Provider

log = structlog.get_logger("pgha-operator")

# Rank of a service in the stop order; a service not named here stops between the load
# balancers and Patroni (whatever it is, it may use PostgreSQL, which needs etcd).
STOP_RANK = {"keepalived": -1, "haproxy": 0, "pgbouncer": 1, "patroni": 2, "etcd": 3}
OTHER_RANK = 1


def stop_order(services: set[str]) -> list[str]:
    return sorted(services, key=lambda s: (STOP_RANK.get(s, OTHER_RANK), s))


def installed_services(provider: Provider, machines: list[str]) -> dict[str, list[str]]:
    """machine -> the services installed on it, as the machine itself says."""
    found: dict[str, list[str]] = {}
    for name in machines:
        try:
            found[name] = provider.host(name).installed_services()
        except (HostError, OSError) as exc:  # destroy removes the machine anyway
            log.warning(
                "cannot list services; they die with the machine", machine=name, error=str(exc)
            )
    return found


def stop_services(provider: Provider, machines: list[str]) -> list[tuple[str, str]]:
    """Stop every installed service, one service kind at a time across all machines; returns
    the (machine, service) pairs stopped. A stop that fails is logged, never fatal: the
    machine's destroy kills what is left."""
    installed = installed_services(provider, machines)
    stopped = []
    for service in stop_order({s for names in installed.values() for s in names}):
        for machine, names in installed.items():
            if service not in names:
                continue
            try:
                provider.host(machine).service(service).stop()
            except (HostError, OSError, ValueError) as exc:  # ValueError: a bad service name
                log.warning(
                    "stop failed; killing instead", machine=machine, service=service, error=str(exc)
                )
                continue
            stopped.append((machine, service))
    return stopped


def teardown(
    provider: Provider, on_left: Callable[[str, list[str]], None] | None = None
) -> list[str]:
    """Stop the services of the running machines, remove every machine; returns their names.
    `on_left(machine, notes)` hears what a provider left on a machine it does not own (ssh:
    packages, the host's own services). Raises OperatorError when the provider still lists a
    machine afterwards."""
    facts = provider.machines()
    stop_services(provider, [f.name for f in facts if f.exists])
    removed = []
    for fact in facts:
        left = provider.destroy(fact.name)  # returns once the machine's processes are gone
        removed.append(fact.name)
        if left and on_left is not None:
            on_left(fact.name, left)
    left = sorted(f.name for f in provider.machines())
    if left:
        raise OperatorError(f"machines still there after destroy: {', '.join(left)}")
    return removed


def remove_state_dir(state_dir: Path) -> None:
    if state_dir.exists():
        shutil.rmtree(state_dir)
