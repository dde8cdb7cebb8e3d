"""The Provider port: where machines come from (DESIGN §4, §7), and the optional
capabilities a provider may declare (power, its own view of a machine, pausing, the network).

Every provider implements `Provider`. A capability is a Protocol the provider implements
explicitly (its class lists it as a base); callers ask with `isinstance(provider, Fencing)`
or `capability(provider, Fencing)`, never by probing for a method name.

    provider   Fencing  MachineStates  Freezing  Isolation  DeathReports  HostSockets  PeerReach
    local      yes      yes            yes       -          yes           yes          -
    nspawn     yes      yes            yes       yes        yes           -            yes
    vagrant    yes      yes            -         -          -             -            -
    ssh        -        -              -         -          -             -            -
(local: machines share this host's loopback; ssh: the operator does not own the power)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, Protocol, TypeVar, runtime_checkable

from pgha_operator.core.errors import PermanentError
from pgha_operator.core.facts.observed import MachineFact
from pgha_operator.core.facts.types import MachineState
from pgha_operator.core.render import Binaries
from pgha_operator.core.render.services import unit_name
from pgha_operator.core.spec import Cluster
from pgha_operator.core.topology import Layout, Machine, Topology
from pgha_operator.shell.hosts.base import Host, HostError


class Provider(Protocol):
    kind: str
    service_manager: Literal["local", "systemd"]
    service_user: str | None  # who runs Patroni/PostgreSQL on the machines
    binaries: Binaries  # paths of the daemons on the machines

    @property
    def can_fence(self) -> bool:
        """power_off really stops a machine (fencing, drills): the provider is `Fencing`."""
        ...

    def preflight(self) -> None: ...

    def machines(self) -> list[MachineFact]: ...
    def create(self, machine: Machine) -> None: ...
    def destroy(self, name: str) -> list[str] | None:
        """Remove the machine; returns only once none of its processes is left. A provider
        that does not own its machines (ssh) returns what it left there, in words."""
        ...

    def host(self, name: str) -> Host: ...
    def layout(self, name: str) -> Layout: ...
    def follow(self, cluster: Cluster, topo: Topology) -> None:
        """The manifest in force changed: machines are found in this topology from now on
        (the controller owns it and builds it once per accepted manifest)."""
        ...


@runtime_checkable
class Fencing(Protocol):
    """The provider owns the machines' power."""

    def power_off(self, name: str) -> None:
        """A power cut; returns once the machine is really off."""
        ...


@runtime_checkable
class MachineStates(Protocol):
    """The provider sees a machine from outside it, whatever its network says."""

    def machine_state(self, name: str) -> MachineState: ...


@runtime_checkable
class Freezing(Protocol):
    """The provider can pause every process of a machine (a hung VM) and resume them."""

    def freeze(self, name: str) -> None: ...
    def thaw(self, name: str) -> None: ...


@runtime_checkable
class Isolation(Protocol):
    """The provider can cut a machine off the network while it keeps running."""

    def isolate(self, name: str) -> None: ...
    def reconnect(self, name: str) -> None: ...


@runtime_checkable
class DeathReports(Protocol):
    """The provider can name the processes of this host that keep a machine alive, so the
    fencer learns of the machine's death the moment they exit (a pidfd each, shell/
    death_watch.py) instead of inferring it from failed probes."""

    def vital_processes(self, name: str) -> dict[int, int]:
        """pid -> start time (/proc's field 22) of each vital process running now; {} when
        none runs (the machine is already down, or unknown)."""
        ...


@runtime_checkable
class HostSockets(Protocol):
    """The machines' Unix sockets are files the operator's host can connect to (HAProxy's
    admin socket: the fencer takes a fenced primary out of the load balancer at once)."""

    def host_path(self, name: str, path: str) -> str:
        """Where `path` of machine `name` is on the operator's host."""
        ...


@runtime_checkable
class PeerReach(Protocol):
    """The provider can try a TCP connection from one machine's own network, not the
    operator's: the fencer asks the replicas whether they lost a primary too (a cut between
    the operator and the primary alone must fence nothing)."""

    def reaches(self, source: str, address: str, port: int, timeout: float) -> bool | None:
        """Whether machine `source` reaches `address:port` within `timeout` seconds (a
        refused connection counts as reached: the address answered); None when it could
        not be tried."""
        ...


CAPABILITIES: tuple[type, ...] = (
    Fencing,
    MachineStates,
    Freezing,
    Isolation,
    DeathReports,
    HostSockets,
    PeerReach,
)
Cap = TypeVar("Cap")


def capability(provider: object, cap: type[Cap]) -> Cap | None:
    """`provider` seen as `cap` (one of CAPABILITIES), or None when it lacks it."""
    return provider if isinstance(provider, cap) else None


def capabilities(provider: object) -> list[str]:
    """Names of the capabilities `provider` declares (for status and error messages)."""
    return [c.__name__ for c in CAPABILITIES if isinstance(provider, c)]


class ProviderBase:
    """Base of the providers: `can_fence` derived from the Fencing capability; `follow`
    ignores the topology (a provider that looks machines up in it keeps it)."""

    @property
    def can_fence(self) -> bool:
        return isinstance(self, Fencing)

    def follow(self, cluster: Cluster, topo: Topology) -> None:
        return None


# --- machine.json (local, nspawn) ------------------------------------------------------------


class BrokenMachineFile(PermanentError):
    """A machine's record on the operator's disk cannot be read; the message says what to do."""


def read_machine_file(
    path: Path, required: tuple[str, ...] = ("address",)
) -> dict[str, str] | None:
    """The JSON record of a machine; None when absent. Raises BrokenMachineFile, naming the
    file and how to repair it, when it is not a JSON object with the `required` strings."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise BrokenMachineFile(f"{path}: cannot read it ({e.strerror})") from e
    try:
        data = json.loads(text)
    except ValueError as e:
        reason = f"not valid JSON ({e})"
    else:
        if not isinstance(data, dict):
            reason = "not a JSON object"
        else:
            missing = [k for k in required if not isinstance(data.get(k), str)]
            if not missing:
                return data
            reason = f"lacks {', '.join(missing)}"
    example = json.dumps({"name": path.parent.name, **{k: "..." for k in required}})
    raise BrokenMachineFile(
        f"{path} is {reason}: the machine is left alone until the file is repaired; restore "
        f"it (a JSON object like {example}, with the values the machine was made with), or "
        f"move {path.parent} away so that the operator makes the machine anew (its data "
        "goes with it)"
    )


def broken_machine(name: str, error: BrokenMachineFile) -> MachineFact:
    """The fact for a machine whose record is broken: not usable, and why."""
    return MachineFact(name, False, None, error=str(error))


def booted_machine_state(host: Host, cluster: str) -> MachineState:
    """A booted systemd machine: PATRONI_DOWN when its Patroni unit is down, else RUNNING
    (one that does not answer may be cut off from the network, which is not dead)."""
    try:
        res = host.run(
            ["systemctl", "is-active", unit_name(cluster, "patroni")], check=False, timeout=5
        )
    except HostError:
        return MachineState.RUNNING
    if res.stdout.strip() in ("inactive", "failed"):
        return MachineState.PATRONI_DOWN
    return MachineState.RUNNING
