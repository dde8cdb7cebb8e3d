"""The pure diff of declared roles and databases (core/plan/catalog.py): what plan makes,
alters, grants, revokes and drops, what it refuses to drop and why, and what status and its
condition say."""

from __future__ import annotations

from dataclasses import replace

from pgha_operator.core.catalog_actions import (
    AlterDeclaredRole,
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
from pgha_operator.core.conditions import assess
from pgha_operator.core.facts.catalog import CatalogFacts, DatabaseFact, RoleFact
from pgha_operator.core.facts.observed import Observed
from pgha_operator.core.plan import Desired, plan
from pgha_operator.core.plan.catalog import catalog_diff
from pgha_operator.core.spec import parse_text
from pgha_operator.core.status import build_status
from tests.unit.test_plan import converged, demo_desired
from tests.unit.test_spec_catalog import declaring

PRIMARY = ("127.0.10.11", 5432)


def desired_with(block: str) -> Desired:
    cluster = parse_text(declaring(block), "m.yaml")[0][0].cluster
    base = demo_desired()
    return replace(base, cluster=cluster)


def observed_with(desired: Desired, roles=(), databases=()) -> Observed:  # noqa: ANN001
    catalog = CatalogFacts({r.name: r for r in roles}, {d.name: d for d in databases})
    return replace(
        converged(desired),
        roles=frozenset({"admin", "app"}),
        databases=frozenset({"app"}),
        catalog=catalog,
    )


def role(name: str, **kw: object) -> RoleFact:
    fields: dict[str, object] = dict(
        login=True, createdb=False, connection_limit=-1, member_of=frozenset()
    )
    fields.update(kw)
    return RoleFact(name, **fields)  # type: ignore[arg-type]


def database(name: str, owner: str = "app", **kw: object) -> DatabaseFact:
    fields: dict[str, object] = dict(
        encoding="UTF8", locale="C.UTF-8", connections=0, extensions=frozenset({"plpgsql"})
    )
    fields.update(kw)
    return DatabaseFact(name, owner, **fields)  # type: ignore[arg-type]


def test_missing_roles_and_databases_are_created_in_dependency_order() -> None:
    desired = desired_with(
        "    roles:\n"
        "      - {name: reporting, connectionLimit: 5, memberOf: [readers]}\n"
        "      - {name: readers, login: false}\n"
        "    databases:\n"
        "      - {name: shop, owner: reporting, extensions: [pg_trgm], locale: C.UTF-8}"
    )
    actions = plan(desired, observed_with(desired)).actions
    assert actions == (
        CreateDeclaredRole("reporting", RoleAttributes(True, False, 5), *PRIMARY),
        CreateDeclaredRole("readers", RoleAttributes(False, False, -1), *PRIMARY),
        CreateDeclaredDatabase("shop", "reporting", "UTF8", "C.UTF-8", *PRIMARY),
        GrantMembership("reporting", "readers", *PRIMARY),
        CreateExtension("shop", "pg_trgm", *PRIMARY),
    )
    assert actions[0].describe == (
        "create role reporting (login, nocreatedb, connection limit 5) on the primary"
    )


def test_a_role_that_matches_plans_nothing_and_status_says_present() -> None:
    desired = desired_with("    roles:\n      - {name: r, memberOf: [pg_monitor]}")
    observed = observed_with(desired, [role("r", member_of=frozenset({"pg_monitor"}))])
    assert plan(desired, observed).actions == ()
    status = build_status(desired, observed, assess(desired, observed), "Converged", "converged")
    assert status["roles"] == [{"name": "r", "ensure": "present", "state": "present", "reason": ""}]


def test_changed_attributes_are_altered() -> None:
    desired = desired_with("    roles:\n      - {name: r, createdb: true, connectionLimit: 3}")
    observed = observed_with(desired, [role("r", login=False)])
    assert plan(desired, observed).actions == (
        AlterDeclaredRole(
            "r",
            RoleAttributes(True, True, 3),
            ("login", "createdb", "connection limit -1 -> 3"),
            *PRIMARY,
        ),
    )


def test_memberships_are_added_and_removed_but_foreign_groups_are_left_alone() -> None:
    desired = desired_with(
        "    roles:\n"
        "      - {name: r, memberOf: [b]}\n"
        "      - {name: a, login: false}\n"
        "      - {name: b, login: false}"
    )
    # r is in a (declared, no longer listed): revoked; in someone_elses (granted by hand,
    # not declared): kept; b is missing: granted.
    have = frozenset({"a", "someone_elses"})
    observed = observed_with(
        desired, [role("r", member_of=have), role("a", login=False), role("b", login=False)]
    )
    assert plan(desired, observed).actions == (
        GrantMembership("r", "b", *PRIMARY),
        RevokeMembership("r", "a", *PRIMARY),
    )
    row = catalog_diff(desired.cluster.spec.postgres, observed).rows[0]
    assert (row.state, row.reason) == ("updating", "+member of b, -member of a")


def test_a_database_with_another_owner_or_a_missing_extension_is_altered() -> None:
    desired = desired_with(
        "    databases:\n      - {name: d, owner: app, extensions: [hstore, plpgsql]}"
    )
    observed = observed_with(desired, databases=[database("d", owner="postgres")])
    assert plan(desired, observed).actions == (
        SetDatabaseOwner("d", "app", *PRIMARY),
        CreateExtension("d", "hstore", *PRIMARY),
    )


def test_extensions_not_read_are_not_assumed_missing() -> None:
    desired = desired_with("    databases:\n      - {name: d, owner: app, extensions: [hstore]}")
    observed = observed_with(desired, databases=[database("d", extensions=None)])
    assert plan(desired, observed).actions == ()


def test_nothing_is_dropped_unless_the_manifest_says_absent() -> None:
    desired = desired_with("    roles:\n      - {name: r}")
    # A role and a database the manifest does not name are simply not looked at.
    observed = observed_with(desired, [role("r"), role("other")], [database("other_db")])
    assert plan(desired, observed).actions == ()


def test_ensure_absent_drops_databases_before_roles() -> None:
    desired = desired_with(
        "    roles:\n      - {name: r, ensure: absent}\n"
        "    databases:\n      - {name: d, owner: app, ensure: absent}"
    )
    # r owns d: that ownership goes with the database dropped in the same cycle.
    observed = observed_with(desired, [role("r", owned=1)], [database("d", owner="r")])
    assert plan(desired, observed).actions == (
        DropDeclaredDatabase("d", *PRIMARY),
        DropDeclaredRole("r", *PRIMARY),
    )
    gone = observed_with(desired)
    assert plan(desired, gone).actions == ()
    rows = catalog_diff(desired.cluster.spec.postgres, gone).rows
    assert [(r.name, r.state) for r in rows] == [("r", "absent"), ("d", "absent")]


def test_a_database_in_use_is_not_dropped_and_status_says_why() -> None:
    desired = desired_with("    databases:\n      - {name: d, owner: app, ensure: absent}")
    observed = observed_with(desired, databases=[database("d", connections=2)])
    assert plan(desired, observed).actions == ()
    conditions = assess(desired, observed)
    condition = next(c for c in conditions if c.type == "RolesAndDatabases")
    assert not condition.status
    assert "database d: not dropped: 2 connection(s) open to it" in condition.reason
    status = build_status(desired, observed, conditions, "Degraded", "converged")
    assert status["databases"][0]["state"] == "refused"
    assert "2 connection(s)" in status["databases"][0]["reason"]


def test_a_role_that_owns_objects_or_holds_privileges_is_not_dropped() -> None:
    desired = desired_with("    roles:\n      - {name: r, ensure: absent}")
    for fact, words in (
        (role("r", owned=3), "owns 3 object(s)"),
        (role("r", privileges=2), "holds privileges on 2 object(s)"),
    ):
        observed = observed_with(desired, [fact])
        assert plan(desired, observed).actions == ()
        row = catalog_diff(desired.cluster.spec.postgres, observed).rows[0]
        assert row.state == "refused"
        assert words in row.reason and "REASSIGN OWNED BY r" in row.reason


def test_an_encoding_postgresql_cannot_change_is_reported_not_acted_on() -> None:
    desired = desired_with("    databases:\n      - {name: d, owner: app, encoding: LATIN1}")
    observed = observed_with(desired, databases=[database("d")])
    assert plan(desired, observed).actions == ()
    condition = next(c for c in assess(desired, observed) if c.type == "RolesAndDatabases")
    assert not condition.status and "encoding is UTF8, the manifest says LATIN1" in condition.reason


def test_without_an_answering_primary_nothing_is_planned_and_state_is_unknown() -> None:
    desired = desired_with("    roles:\n      - {name: r}")
    observed = replace(observed_with(desired), catalog=None)
    assert plan(desired, observed).actions == ()
    rows = catalog_diff(desired.cluster.spec.postgres, observed).rows
    assert [(r.state, r.reason) for r in rows] == [("unknown", "no primary answered")]


def test_a_manifest_without_declarations_has_no_condition_and_no_status_rows() -> None:
    desired = demo_desired()
    observed = converged(desired)
    assert all(c.type != "RolesAndDatabases" for c in assess(desired, observed))
    assert "roles" not in build_status(desired, observed, (), "Converged", "converged")
