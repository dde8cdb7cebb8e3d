"""One immutable observation of a whole cluster, taken afresh every cycle."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pgha_operator.core.facts.backup import BackupFacts
from pgha_operator.core.facts.catalog import CatalogFacts
from pgha_operator.core.facts.reinit import ReinitRecord
from pgha_operator.core.facts.start_failure import StartFailure
from pgha_operator.core.facts.types import EtcdFacts, HaproxyFacts, PatroniFacts
from pgha_operator.core.services import ServiceState


@dataclass(frozen=True)
class MachineFact:
    name: str
    exists: bool
    address: str | None = None
    # why the provider cannot use the machine (e.g. its record is corrupt), naming the file
    # and what to do; such a machine is neither used nor made again
    error: str | None = None


@dataclass(frozen=True)
class Observed:
    machines: Mapping[str, MachineFact] = field(default_factory=dict)
    # (machine, path) -> sha256 of the content, None when absent
    files: Mapping[tuple[str, str], str | None] = field(default_factory=dict)
    services: Mapping[tuple[str, str], ServiceState] = field(default_factory=dict)
    etcd: EtcdFacts = field(default_factory=lambda: EtcdFacts(reachable=False))
    patroni: PatroniFacts = field(default_factory=lambda: PatroniFacts(reachable=False))
    haproxy: Mapping[str, HaproxyFacts] = field(default_factory=dict)  # per LB machine
    # login roles present on the primary; None when no primary answered
    roles: frozenset[str] | None = None
    # the operator's databases present on the primary; None when no primary answered
    databases: frozenset[str] | None = None
    # the declared roles and databases as the primary's catalog has them; None: not read
    catalog: CatalogFacts | None = None
    # etcd machine -> whether its data dir holds a member (None/absent: not looked at)
    etcd_data: Mapping[str, bool] = field(default_factory=dict)
    # machines a drill marked down (a crash the operator must not repair yet): shell/state/marks.py
    down: frozenset[str] = frozenset()
    # members Patroni reports `start failed` -> the cause read from their log tail
    start_failures: Mapping[str, StartFailure] = field(default_factory=dict)
    # the operator's own reinitialisations per member (its memory, from the state dir)
    reinits: Mapping[str, ReinitRecord] = field(default_factory=dict)
    # spec.backup: the stanza and the primary's archiver; None without spec.backup
    backup: BackupFacts | None = None
    now: float = 0.0  # Unix time of the observation: backoffs are measured against it

    def service(self, machine: str, name: str) -> ServiceState:
        return self.services.get((machine, name), ServiceState.STOPPED)

    def machine_error(self, name: str) -> str | None:
        fact = self.machines.get(name)
        return None if fact is None else fact.error

    def has_machine(self, name: str) -> bool:
        fact = self.machines.get(name)
        return fact is not None and fact.exists
