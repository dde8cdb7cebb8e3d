"""The Provider port: where machines come from (DESIGN §4, §7)."""

from __future__ import annotations

from typing import Protocol

from pgha_operator.hosts.base import Host
from pgha_operator.observe.snapshot import MachineFact
from pgha_operator.topology import Layout, Machine


class Provider(Protocol):
    kind: str

    def machines(self) -> list[MachineFact]: ...
    def create(self, machine: Machine) -> None: ...
    def destroy(self, name: str) -> None: ...
    def host(self, name: str) -> Host: ...
    def layout(self, name: str) -> Layout: ...
    def power_off(self, name: str) -> None: ...
