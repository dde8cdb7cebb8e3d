"""Read why replicas in `start failed` cannot start: the tail of each one's Patroni log.

The fact is a read plus a pure parser (core/facts/start_failure.py). Patroni runs the
postmaster with its own stdout/stderr, so PostgreSQL's FATAL lines land in the Patroni log:
the local supervisor's `<machine>/var/log/pgha/patroni.log`, or the journal of the
`pgha-<cluster>-patroni` unit where systemd runs it. Only stuck members are read: a converged cluster
costs nothing here.
"""

from __future__ import annotations

from pgha_operator.core.facts.start_failure import StartFailure, parse_start_failure
from pgha_operator.core.facts.types import PatroniFacts
from pgha_operator.core.plan.reinit import STUCK_STATES
from pgha_operator.core.render.services import unit_name
from pgha_operator.shell.hosts.base import HostError
from pgha_operator.shell.providers.base import Provider

TAIL_LINES = 500  # Patroni retries a failed start every few s, ~120 lines per attempt


def log_tail_command(provider: Provider, machine: str, cluster: str) -> list[str]:
    if provider.service_manager == "systemd":
        return [
            "journalctl", "-u", unit_name(cluster, "patroni"), "-n", str(TAIL_LINES), "--no-pager",
            "-o", "cat",
        ]  # fmt: skip
    return ["tail", "-n", str(TAIL_LINES), f"{provider.layout(machine).log_dir}/patroni.log"]


def read_start_failures(
    provider: Provider, patroni: PatroniFacts, machines: set[str], cluster: str
) -> dict[str, StartFailure]:
    """Member -> cause, for members in `start failed` on a machine that is up. A member whose
    log cannot be read is left out: the plan never reinitialises on an unknown cause."""
    out: dict[str, StartFailure] = {}
    for member in patroni.members:
        if member.state not in STUCK_STATES or member.name not in machines:
            continue
        try:
            res = provider.host(member.name).run(
                log_tail_command(provider, member.name, cluster), check=False, timeout=10
            )
        except HostError:
            continue
        if res.ok:
            out[member.name] = parse_start_failure(res.stdout)
    return out
