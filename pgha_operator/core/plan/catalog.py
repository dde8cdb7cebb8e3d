"""Declared roles and databases: the primary's catalog compared with the manifest, as the
actions that make them match and a row per declared name for `status`.

PURE. Never drops anything the manifest does not mark `ensure: absent`, and refuses (with
the reason, in the rows) to drop a database someone is connected to or a role that owns
objects or holds privileges: PostgreSQL would refuse too, or take data with it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from pgha_operator.core.catalog_actions import (
    AlterDeclaredRole,
    CatalogAction,
    CreateDeclaredDatabase,
    CreateDeclaredRole,
    CreateExtension,
    DropDeclaredDatabase,
    DropDeclaredRole,
    GrantMembership,
    RevokeMembership,
    RoleAttributes,
    SetDatabaseOwner,
)
from pgha_operator.core.facts.catalog import CatalogFacts, DatabaseFact, RoleFact
from pgha_operator.core.facts.observed import Observed
from pgha_operator.core.spec.catalog import GRANTABLE_PREDEFINED, DatabaseSpec, RoleSpec
from pgha_operator.core.spec.catalog_rules import APP_ROLE
from pgha_operator.core.spec.models import PostgresSpec

State = Literal[
    "present", "absent", "creating", "updating", "dropping", "refused", "differs", "unknown"
]
# States a cycle cannot fix by itself: the user has to act (status condition false).
STUCK: frozenset[str] = frozenset({"refused", "differs"})


@dataclass(frozen=True)
class CatalogRow:
    kind: Literal["role", "database"]
    name: str
    ensure: str
    state: State
    reason: str = ""


@dataclass(frozen=True)
class CatalogDiff:
    actions: tuple[CatalogAction, ...] = ()
    rows: tuple[CatalogRow, ...] = ()

    @property
    def stuck(self) -> tuple[CatalogRow, ...]:
        return tuple(r for r in self.rows if r.state in STUCK)


@dataclass
class _Work:
    """Actions collected by kind, emitted in dependency order."""

    host: str
    port: int
    create_roles: list[CatalogAction] = field(default_factory=list)
    alter_roles: list[CatalogAction] = field(default_factory=list)
    databases: list[CatalogAction] = field(default_factory=list)
    memberships: list[CatalogAction] = field(default_factory=list)
    extensions: list[CatalogAction] = field(default_factory=list)
    drop_databases: list[CatalogAction] = field(default_factory=list)
    drop_roles: list[CatalogAction] = field(default_factory=list)

    def ordered(self) -> tuple[CatalogAction, ...]:
        # Roles before the databases they own and the memberships that name them; drops of
        # databases before the roles that may own them.
        return (
            *self.create_roles,
            *self.alter_roles,
            *self.databases,
            *self.memberships,
            *self.extensions,
            *self.drop_databases,
            *self.drop_roles,
        )


def catalog_diff(spec: PostgresSpec, observed: Observed) -> CatalogDiff:
    if not spec.roles and not spec.databases:
        return CatalogDiff()
    leader = observed.patroni.leader
    catalog = observed.catalog
    if catalog is None or leader is None:
        rows = [
            CatalogRow("role", r.name, r.ensure, "unknown", "no primary answered")
            for r in spec.roles
        ]
        rows += [
            CatalogRow("database", d.name, d.ensure, "unknown", "no primary answered")
            for d in spec.databases
        ]
        return CatalogDiff((), tuple(rows))
    work = _Work(leader.host, leader.port)
    managed = {r.name for r in spec.roles} | {APP_ROLE} | GRANTABLE_PREDEFINED
    dropping = {d.name for d in spec.databases if d.ensure == "absent"} & set(catalog.databases)
    rows = [_database(d, catalog.databases.get(d.name), work) for d in spec.databases]
    rows = [
        *(
            _role(
                r, catalog.roles.get(r.name), managed, _owned_dbs(catalog, r.name, dropping), work
            )
            for r in spec.roles
        ),
        *rows,
    ]
    return CatalogDiff(work.ordered(), tuple(rows))


def _owned_dbs(catalog: CatalogFacts, role: str, dropping: set[str]) -> int:
    """Databases owned by `role` that this cycle drops: their ownership goes with them."""
    return sum(1 for name in dropping if catalog.databases[name].owner == role)


def _role(
    role: RoleSpec, fact: RoleFact | None, managed: set[str], going: int, work: _Work
) -> CatalogRow:
    at = (work.host, work.port)
    if role.ensure == "absent":
        if fact is None:
            return CatalogRow("role", role.name, "absent", "absent")
        owned = fact.owned - going
        if owned > 0 or fact.privileges > 0:
            return CatalogRow(
                "role", role.name, "absent", "refused", _why_kept(role.name, owned, fact.privileges)
            )
        work.drop_roles.append(DropDeclaredRole(role.name, *at))
        return CatalogRow("role", role.name, "absent", "dropping")
    wanted = RoleAttributes(role.login, role.createdb, role.connection_limit)
    if fact is None:
        work.create_roles.append(CreateDeclaredRole(role.name, wanted, *at))
        work.memberships += [GrantMembership(role.name, g, *at) for g in role.member_of]
        return CatalogRow("role", role.name, "present", "creating")
    changes = _attribute_changes(wanted, fact)
    if changes:
        work.alter_roles.append(AlterDeclaredRole(role.name, wanted, changes, *at))
    have = fact.member_of & managed
    grants = [g for g in role.member_of if g not in have]
    revokes = sorted(have - set(role.member_of))
    work.memberships += [GrantMembership(role.name, g, *at) for g in grants]
    work.memberships += [RevokeMembership(role.name, g, *at) for g in revokes]
    if changes or grants or revokes:
        what = [
            *changes,
            *(f"+member of {g}" for g in grants),
            *(f"-member of {g}" for g in revokes),
        ]
        return CatalogRow("role", role.name, "present", "updating", ", ".join(what))
    return CatalogRow("role", role.name, "present", "present")


def _why_kept(name: str, owned: int, privileges: int) -> str:
    held = []
    if owned > 0:
        held.append(f"owns {owned} object(s)")
    if privileges > 0:
        held.append(f"holds privileges on {privileges} object(s)")
    return (
        f"not dropped: {name} {' and '.join(held)} (in any database); reassign or drop them "
        f"first (REASSIGN OWNED BY {name} TO ...; DROP OWNED BY {name}; in each database)"
    )


def _attribute_changes(wanted: RoleAttributes, fact: RoleFact) -> tuple[str, ...]:
    changes = []
    if wanted.login != fact.login:
        changes.append("login" if wanted.login else "nologin")
    if wanted.createdb != fact.createdb:
        changes.append("createdb" if wanted.createdb else "nocreatedb")
    if wanted.connection_limit != fact.connection_limit:
        changes.append(f"connection limit {fact.connection_limit} -> {wanted.connection_limit}")
    return tuple(changes)


def _database(database: DatabaseSpec, fact: DatabaseFact | None, work: _Work) -> CatalogRow:
    at = (work.host, work.port)
    name = database.name
    if database.ensure == "absent":
        if fact is None:
            return CatalogRow("database", name, "absent", "absent")
        if fact.connections > 0:
            return CatalogRow(
                "database",
                name,
                "absent",
                "refused",
                f"not dropped: {fact.connections} connection(s) open to it; PostgreSQL drops "
                "only a database nobody uses: close them (or pg_terminate_backend) and the "
                "next cycle drops it",
            )
        work.drop_databases.append(DropDeclaredDatabase(name, *at))
        return CatalogRow("database", name, "absent", "dropping")
    if fact is None:
        work.databases.append(
            CreateDeclaredDatabase(name, database.owner, database.encoding, database.locale, *at)
        )
        work.extensions += [CreateExtension(name, e, *at) for e in database.extensions]
        return CatalogRow("database", name, "present", "creating")
    what = []
    if fact.owner != database.owner:
        work.databases.append(SetDatabaseOwner(name, database.owner, *at))
        what.append(f"owner {fact.owner} -> {database.owner}")
    missing = _missing(database.extensions, fact.extensions)
    work.extensions += [CreateExtension(name, e, *at) for e in missing]
    what += [f"+extension {e}" for e in missing]
    fixed = _fixed_differences(database, fact)
    if fixed:
        return CatalogRow("database", name, "present", "differs", "; ".join([*what, *fixed]))
    if what:
        return CatalogRow("database", name, "present", "updating", ", ".join(what))
    return CatalogRow("database", name, "present", "present")


def _missing(wanted: Iterable[str], have: frozenset[str] | None) -> list[str]:
    return [] if have is None else [e for e in wanted if e not in have]


def _fixed_differences(database: DatabaseSpec, fact: DatabaseFact) -> list[str]:
    """Encoding and locale are set when a database is made; PostgreSQL cannot change them."""
    out = []
    if fact.encoding != database.encoding:
        out.append(f"encoding is {fact.encoding}, the manifest says {database.encoding}")
    if database.locale is not None and fact.locale != database.locale:
        out.append(f"locale is {fact.locale}, the manifest says {database.locale}")
    if out:
        out.append("PostgreSQL cannot change these: recreate the database or fix the manifest")
    return out
