"""Fake machines: a file system and processes per machine, behind the real Host, Service and
Provider ports (shell/hosts/base.py, shell/providers/base.py).

A service reads its definition (services_dir/<name>.json, as the local supervisor does) and
its config file only when it starts or reloads: what runs is `Proc.loaded`, not what the file
says now. Whether a running process also *serves* is the component models' business.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pgha_operator.core.facts.observed import MachineFact
from pgha_operator.core.facts.types import MachineState
from pgha_operator.core.render import Binaries
from pgha_operator.core.services import ServiceState
from pgha_operator.core.topology import Layout, Machine, layout
from pgha_operator.shell.hosts.base import CommandResult, HostError
from pgha_operator.shell.providers.base import (
    Fencing,
    Freezing,
    MachineStates,
    ProviderBase,
)

if TYPE_CHECKING:
    from tests.fakeworld.world import FakeWorld

SERVICE_USER = "postgres"


@dataclass
class Proc:
    """One service process: what it loaded when it (re)started, and for how long it runs."""

    service: str
    config_path: str
    loaded: bytes | None  # the config file as read at the last start or reload
    definition: bytes  # the definition file as read at start
    state: ServiceState = ServiceState.RUNNING
    age: int = 0  # cycles since start
    ready_at: int = 1  # age from which it serves (a member takes a cycle or two to start)
    dies: bool = False  # a fault: it dies before the next cycle
    extra: dict[str, Any] = field(default_factory=dict)  # component state (e.g. etcd member id)

    @property
    def ready(self) -> bool:
        return self.state == ServiceState.RUNNING and self.age >= self.ready_at


@dataclass
class FakeMachine:
    name: str
    address: str
    files: dict[str, bytes] = field(default_factory=dict)
    procs: dict[str, Proc] = field(default_factory=dict)
    powered: bool = True
    frozen: bool = False  # processes exist but none runs (SIGSTOP, a hung VM)

    def proc(self, service: str) -> Proc | None:
        p = self.procs.get(service)
        return p if p is not None and p.state == ServiceState.RUNNING and self.powered else None

    def exists_under(self, path: str) -> bool:
        prefix = path.rstrip("/") + "/"
        return path in self.files or any(p.startswith(prefix) for p in self.files)


def config_path_of(service: str, argv: Sequence[str]) -> str:
    """Where the definition's command line says the config file is."""
    for flag in ("--config-file", "-f"):
        if flag in argv:
            return argv[list(argv).index(flag) + 1]
    if service == "patroni" and len(argv) > 1:
        return argv[1]
    raise HostError(f"cannot tell {service}'s config file from {list(argv)}")


class FakeService:
    def __init__(self, world: FakeWorld, machine: str, name: str) -> None:
        self.world, self.machine, self.name = world, machine, name

    def _m(self) -> FakeMachine:
        return self.world.reachable(self.machine)

    def state(self) -> ServiceState:
        p = self._m().procs.get(self.name)
        return p.state if p else ServiceState.STOPPED

    def pid(self) -> int | None:
        return 4242 if self.state() == ServiceState.RUNNING else None

    def start(self) -> None:
        m = self._m()
        if m.proc(self.name):
            return
        where = f"start {self.name} on {self.machine}"
        if self.world.faults.hit("start_error", where):
            raise HostError(f"{where}: timed out (injected)")
        definition = m.files.get(f"{self.world.layout.services_dir}/{self.name}.json")
        if definition is None:
            raise HostError(f"{where}: no service definition")
        try:
            path = config_path_of(self.name, json.loads(definition)["argv"])
        except (ValueError, KeyError, TypeError) as exc:  # as the local supervisor says it
            raise HostError(f"{where}: bad definition: {exc!r}") from exc
        proc = Proc(self.name, path, m.files.get(path), definition)
        proc.ready_at = self.world.faults.delay(1, 2)
        proc.dies = self.world.faults.hit("start_dies", where)
        if proc.loaded is None:
            proc.state = ServiceState.FAILED  # exits at once: no config to read
        m.procs[self.name] = proc
        self.world.on_start(self.machine, proc)

    def stop(self) -> None:
        m = self._m()
        proc = m.procs.pop(self.name, None)
        if proc is not None and proc.state == ServiceState.RUNNING:
            self.world.on_stop(self.machine, proc, graceful=True)

    def reload(self) -> None:
        m = self._m()
        proc = m.proc(self.name)
        if proc is None:
            return
        if self.world.faults.hit("reload_lost", f"reload {self.name} on {self.machine}"):
            raise HostError(f"reload {self.name} on {self.machine}: timed out (injected)")
        proc.loaded = m.files.get(proc.config_path)
        self.world.on_reload(self.machine, proc)

    def restart(self) -> None:
        self.stop()
        self.start()

    def reread_definition(self) -> None:
        return None  # like the local supervisor: the definition is read at each start


class FakeHost:
    def __init__(self, world: FakeWorld, name: str) -> None:
        self.world, self.name = world, name

    def run(
        self,
        argv: Sequence[str],
        *,
        user: str | None = None,
        timeout: float = 30,
        check: bool = True,
        input: str | None = None,
    ) -> CommandResult:
        m = self.world.reachable(self.name)
        code, out, err = 127, "", f"{argv[0]}: not in the fake world"
        if list(argv[:2]) == ["test", "-d"]:
            code, err = (0 if m.exists_under(argv[2]) else 1), ""
        elif argv[0] == self.world.binaries.haproxy and "-c" in argv:
            text = m.files.get(argv[-1], b"").decode()
            code, err = (0, "") if "backend primary" in text else (1, "[ALERT] no backend")
        elif argv[0] == "tail" and argv[-1] in m.files:
            lines = m.files[argv[-1]].decode().splitlines(keepends=True)
            code, out, err = 0, "".join(lines[-int(argv[2]) :]), ""
        elif list(argv[:2]) == ["systemctl", "is-active"]:
            code, out, err = 0, self.service(argv[2].removeprefix("pgha-")).state() + "\n", ""
        result = CommandResult(tuple(argv), code, out, err)
        if check and not result.ok:
            raise HostError(f"{self.name}: {' '.join(argv)} failed: {err}")
        return result

    def read(self, path: str) -> bytes | None:
        return self.world.reachable(self.name).files.get(path)

    def write(self, path: str, data: bytes, *, mode: int = 0o644, owner: str | None = None) -> bool:
        m = self.world.reachable(self.name)
        if self.world.faults.hit("write", f"write {self.name}:{path}"):
            raise HostError(f"write {self.name}:{path}: no space left on device (injected)")
        if m.files.get(path) == data:
            return False
        m.files[path] = data
        return True

    def remove(self, path: str) -> None:
        m = self.world.reachable(self.name)
        prefix = path.rstrip("/") + "/"
        for p in [p for p in m.files if p == path or p.startswith(prefix)]:
            del m.files[p]

    def service(self, name: str) -> FakeService:
        return FakeService(self.world, self.name, name)


class FakeProvider(ProviderBase, Fencing, MachineStates, Freezing):
    """Machines come and go in memory; every one has the FHS layout on its own file system.
    Capabilities as the local provider's: power, its own view of a machine, pausing."""

    kind = "fake"
    service_manager: Literal["local", "systemd"] = "local"
    service_user: str | None = SERVICE_USER

    def __init__(self, world: FakeWorld) -> None:
        self.world = world
        self.binaries: Binaries = world.binaries

    def preflight(self) -> None:
        return None

    def machines(self) -> list[MachineFact]:
        return [
            MachineFact(m.name, m.powered, m.address)
            for m in sorted(self.world.machines.values(), key=lambda m: m.name)
        ]

    def create(self, machine: Machine) -> None:
        existing = self.world.machines.get(machine.name)
        if existing is None:
            self.world.machines[machine.name] = FakeMachine(machine.name, machine.address)
        else:
            existing.powered = True  # creating an existing machine boots it

    def destroy(self, name: str) -> None:
        m = self.world.machines.pop(name, None)
        if m is not None:
            for proc in list(m.procs.values()):
                self.world.on_stop(name, proc, graceful=False)
            self.world.on_destroy(name)

    def host(self, name: str) -> FakeHost:
        return FakeHost(self.world, name)

    def layout(self, name: str) -> Layout:
        return self.world.layout

    def power_off(self, name: str) -> None:
        m = self.world.machines.get(name)
        if m is None or not m.powered:
            return
        m.powered, m.frozen = False, False
        for proc in m.procs.values():
            if proc.state == ServiceState.RUNNING:
                self.world.on_stop(name, proc, graceful=False)
        m.procs.clear()

    def freeze(self, name: str) -> None:
        self.world.machines[name].frozen = True

    def thaw(self, name: str) -> None:
        self.world.machines[name].frozen = False

    def machine_state(self, name: str) -> MachineState:
        """As the local provider sees it: no process is DEAD, stopped ones FROZEN; a Patroni
        that died leaves its PostgreSQL running (PATRONI_DOWN)."""
        m = self.world.machines.get(name)
        if m is None or not m.powered or not m.procs:
            return MachineState.DEAD
        if m.frozen:
            return MachineState.FROZEN
        if "patroni" in m.procs and m.proc("patroni") is None:
            return MachineState.PATRONI_DOWN
        return MachineState.RUNNING


def fhs_layout(cluster: str) -> Layout:
    return layout("/", cluster)
