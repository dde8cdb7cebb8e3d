"""The Provider port: where machines come from (DESIGN §4, §7)."""

from __future__ import annotations

from typing import Literal, Protocol

from pgha_operator.core.facts.observed import MachineFact
from pgha_operator.core.facts.types import MachineState
from pgha_operator.core.render import Binaries
from pgha_operator.core.topology import Layout, Machine
from pgha_operator.shell.hosts.base import Host, HostError


class Provider(Protocol):
    kind: str
    service_manager: Literal["local", "systemd"]
    service_user: str | None  # who runs Patroni/PostgreSQL on the machines
    binaries: Binaries  # paths of the daemons on the machines
    can_fence: bool  # power_off really stops a machine (fencing, drills)

    def preflight(self) -> None: ...

    def machines(self) -> list[MachineFact]: ...
    def create(self, machine: Machine) -> None: ...
    def destroy(self, name: str) -> None: ...
    def host(self, name: str) -> Host: ...
    def layout(self, name: str) -> Layout: ...
    def power_off(self, name: str) -> None: ...


def booted_machine_state(host: Host) -> MachineState:
    """A booted systemd machine: PATRONI_DOWN when its Patroni unit is down, else RUNNING
    (one that does not answer may be cut off from the network, which is not dead)."""
    try:
        res = host.run(["systemctl", "is-active", "pgha-patroni"], check=False, timeout=5)
    except HostError:
        return MachineState.RUNNING
    if res.stdout.strip() in ("inactive", "failed"):
        return MachineState.PATRONI_DOWN
    return MachineState.RUNNING
