"""What the primary's catalog says about the declared roles and databases (read by
shell/observe.py as the superuser on the primary, compared by core/plan/catalog.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RoleFact:
    name: str
    login: bool
    createdb: bool
    connection_limit: int  # -1: no limit
    member_of: frozenset[str]  # the roles it is a direct member of
    owned: int = 0  # objects it owns, in every database (pg_shdepend 'o')
    privileges: int = 0  # objects it holds privileges on (pg_shdepend 'a'), and policies


@dataclass(frozen=True)
class DatabaseFact:
    name: str
    owner: str
    encoding: str
    locale: str  # LC_COLLATE (the one a manifest's `locale` sets with LC_CTYPE)
    connections: int  # backends connected to it now (pg_stat_activity)
    extensions: frozenset[str] | None = None  # None: not read (the database was not asked)


@dataclass(frozen=True)
class CatalogFacts:
    """The declared names that exist on the primary (a name absent here does not exist)."""

    roles: Mapping[str, RoleFact] = field(default_factory=dict)
    databases: Mapping[str, DatabaseFact] = field(default_factory=dict)
