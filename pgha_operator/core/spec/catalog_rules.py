"""Rules across declared roles and databases: names declared twice, owners and memberships
that name no declared role, membership cycles. Each problem is (field path, reason)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from pgha_operator.core.spec.catalog import GRANTABLE_PREDEFINED

if TYPE_CHECKING:
    from pgha_operator.core.spec.catalog import DatabaseSpec, RoleSpec
    from pgha_operator.core.spec.models import PostgresSpec

Found = Iterator[tuple[str, str]]
APP_ROLE = "app"  # the operator's application role: an owner and a group like a declared one
ROLES = "spec.postgres.roles"
DATABASES = "spec.postgres.databases"


def catalog_problems(postgres: PostgresSpec) -> Found:
    roles, databases = postgres.roles, postgres.databases
    yield from _twice(ROLES, [r.name for r in roles], "role")
    yield from _twice(DATABASES, [d.name for d in databases], "database")
    present = {r.name for r in roles if r.ensure == "present"}
    absent = {r.name for r in roles if r.ensure == "absent"}
    yield from _memberships(roles, present, absent)
    yield from _owners(databases, present, absent)
    yield from _cycles(roles)


def _twice(where: str, names: Sequence[str], what: str) -> Found:
    first: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in first:
            yield (
                f"{where}.{index}.name",
                f"{what} {name!r} is also declared at {where}.{first[name]}; keep one",
            )
        first.setdefault(name, index)


def _memberships(roles: Sequence[RoleSpec], present: set[str], absent: set[str]) -> Found:
    groups = present | {APP_ROLE} | GRANTABLE_PREDEFINED
    for index, role in enumerate(roles):
        if role.ensure == "absent":
            continue
        seen: set[str] = set()
        for number, group in enumerate(role.member_of):
            path = f"{ROLES}.{index}.memberOf.{number}"
            if group in seen:
                yield path, f"{group!r} is listed twice"
            elif group == role.name:
                yield path, "a role cannot be a member of itself"
            elif group in absent:
                yield path, f"role {group!r} is declared with ensure: absent (it is dropped)"
            elif group.startswith("pg_") and group not in GRANTABLE_PREDEFINED:
                yield (
                    path,
                    (
                        f"{group!r} is not a predefined role a declared role may join; allowed: "
                        + ", ".join(sorted(GRANTABLE_PREDEFINED))
                    ),
                )
            elif group not in groups:
                yield (
                    path,
                    (
                        f"role {group!r} is not declared in spec.postgres.roles "
                        f"(a declared role, {APP_ROLE!r} or a pg_ predefined role)"
                    ),
                )
            seen.add(group)


def _owners(databases: Sequence[DatabaseSpec], present: set[str], absent: set[str]) -> Found:
    for index, database in enumerate(databases):
        path = f"{DATABASES}.{index}.owner"
        if database.ensure == "absent":
            continue
        if database.owner in absent:
            yield path, f"role {database.owner!r} is declared with ensure: absent"
        elif database.owner not in present | {APP_ROLE}:
            yield (
                path,
                (
                    f"role {database.owner!r} is not declared in spec.postgres.roles "
                    f"(an owner is a declared role or {APP_ROLE!r})"
                ),
            )
        seen: set[str] = set()
        for number, extension in enumerate(database.extensions):
            if extension in seen:
                yield f"{DATABASES}.{index}.extensions.{number}", f"{extension!r} is listed twice"
            seen.add(extension)


def _cycles(roles: Sequence[RoleSpec]) -> Found:
    """PostgreSQL refuses a GRANT that would make a role a member of itself in a loop."""
    groups = {r.name: set(r.member_of) - {r.name} for r in roles if r.ensure == "present"}
    for index, role in enumerate(roles):
        if role.ensure == "present" and _reaches(groups, role.name, role.name, set()):
            yield (
                f"{ROLES}.{index}.memberOf",
                f"role {role.name!r} would be a member of itself through its groups "
                "(a membership loop)",
            )
            return  # one report per loop is enough


def _reaches(groups: dict[str, set[str]], start: str, target: str, seen: set[str]) -> bool:
    for group in groups.get(start, ()):
        if group == target:
            return True
        if group not in seen:
            seen.add(group)
            if _reaches(groups, group, target, seen):
                return True
    return False
