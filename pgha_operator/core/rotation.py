"""Password rotation (`pgha-operator rotate passwords`): which secret each login uses, what
carries it, and the order of the steps that never breaks replication or Patroni's logins.

PURE: the shell (shell/rotation.py) generates the passwords and executes the steps.

The order, for a database role: (1) the new password is saved in secrets.yaml (and its
copy) with the old one kept beside it (rotation.yaml) until (2) `ALTER ROLE` has set it on
the primary; only then (3) do the configs that carry it (patroni.yml) change, and Patroni
reloads. Until (2) is done the operator keeps rendering and logging in with the old
password (`effective_secrets`), so a crash anywhere in between leaves a cluster whose
configs and roles agree; the operator's next cycle finishes the rotation. For the Patroni
REST and HAProxy stats logins nothing needs setting first: saved, then configs, reload.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Literal

from pgha_operator.core.errors import PermanentError
from pgha_operator.core.render.context import (
    ADMIN_USER,
    APP_USER,
    POOLER_USER,
    REPLICATION_USER,
    REST_USER,
    SUPERUSER,
    Secrets,
)

STATS_USER = "stats"  # HAProxy's statistics page (basic auth)

ConfigName = Literal["patroni.yml", "haproxy.cfg", "userlist.txt"]


@dataclass(frozen=True)
class Login:
    """One login whose password the operator generated."""

    name: str  # the role or user name
    field: str  # its Secrets field
    database: bool  # a PostgreSQL role: ALTER ROLE before any config carries it
    carried_by: tuple[ConfigName, ...]  # the configs that hold the password
    purpose: str


LOGINS: tuple[Login, ...] = (
    Login(SUPERUSER, "superuser_password", True, ("patroni.yml",), "PostgreSQL superuser"),
    Login(
        REPLICATION_USER, "replication_password", True, ("patroni.yml",), "streaming replication"
    ),
    Login(ADMIN_USER, "admin_password", True, (), "administration role"),
    Login(APP_USER, "app_password", True, (), "the application's role (what `dsn` gives)"),
    Login(REST_USER, "rest_password", False, ("patroni.yml",), "Patroni REST API"),
    Login(STATS_USER, "stats_password", False, ("haproxy.cfg",), "HAProxy stats page"),
    # Exists only with spec.pooler on (ALTER ROLE skips a role that does not exist).
    Login(POOLER_USER, "pooler_password", True, ("userlist.txt",), "PgBouncer's auth_query role"),
)
BY_NAME: Mapping[str, Login] = {login.name: login for login in LOGINS}
# The service that re-reads each config on reload.
RELOADS: Mapping[ConfigName, str] = {
    "patroni.yml": "patroni",
    "haproxy.cfg": "haproxy",
    "userlist.txt": "pgbouncer",
}


ROLE_FIELD = "role:"  # a declared role's password: "role:NAME" (Secrets.roles)


def declared_login(name: str) -> Login:
    """A declared login role (spec.postgres.roles): its password lives in Secrets.roles."""
    return Login(name, f"{ROLE_FIELD}{name}", True, (), "a declared role (spec.postgres.roles)")


def select_logins(names: Iterable[str] | None, declared: Iterable[str] = ()) -> tuple[Login, ...]:
    """The logins named (all when none is), the operator's in LOGINS order, then the
    `declared` login roles; an unknown name is refused."""
    every = (*LOGINS, *(declared_login(n) for n in declared if n not in BY_NAME))
    if not names:
        return every
    wanted = set(names)
    unknown = sorted(wanted - {x.name for x in every})
    if unknown:
        raise PermanentError(
            f"no such role {', '.join(unknown)}: choose from {', '.join(x.name for x in every)}"
        )
    return tuple(login for login in every if login.name in wanted)


StepKind = Literal["save", "alter", "reload", "verify"]


@dataclass(frozen=True)
class Step:
    kind: StepKind
    logins: tuple[str, ...]
    what: str

    @property
    def describe(self) -> str:
        return f"{self.what}: {', '.join(self.logins)}"


def rotation_steps(logins: Iterable[Login]) -> tuple[Step, ...]:
    """The steps in the order they run. The superuser's ALTER ROLE comes last: the others
    are set over its login."""
    chosen = tuple(logins)
    names = tuple(login.name for login in chosen)
    steps = [Step("save", names, "save new passwords in secrets.yaml, the old ones kept")]
    database = sorted(
        (login for login in chosen if login.database), key=lambda x: x.name == SUPERUSER
    )
    if database:
        steps.append(Step("alter", tuple(x.name for x in database), "ALTER ROLE on the primary"))
    for config, service in RELOADS.items():
        carried = tuple(login.name for login in chosen if config in login.carried_by)
        if carried:
            steps.append(Step("reload", carried, f"write {config} everywhere, reload {service}"))
    steps.append(Step("verify", names, "cluster converged, new passwords accepted"))
    return tuple(steps)


def alter_order(pending: Iterable[str]) -> tuple[Login, ...]:
    """The database logins whose ALTER ROLE is pending (by Secrets field), superuser last."""
    fields = set(pending)
    chosen = [login for login in LOGINS if login.database and login.field in fields]
    chosen += [
        declared_login(f.removeprefix(ROLE_FIELD))
        for f in sorted(fields)
        if f.startswith(ROLE_FIELD)
    ]
    return tuple(sorted(chosen, key=lambda x: x.name == SUPERUSER))


def password_of(secrets: Secrets, field: str) -> str:
    """The password a Secrets field (or a declared role's "role:NAME") holds."""
    if field.startswith(ROLE_FIELD):
        password = secrets.role_password(field.removeprefix(ROLE_FIELD))
        if password is None:
            raise ValueError(f"no password for {field}")
        return password
    return str(getattr(secrets, field))


def rotated(secrets: Secrets, new: Mapping[str, str]) -> Secrets:
    """`secrets` with the given fields replaced (field -> new password)."""
    roles = {f.removeprefix(ROLE_FIELD): p for f, p in new.items() if f.startswith(ROLE_FIELD)}
    fields = {f: p for f, p in new.items() if not f.startswith(ROLE_FIELD)}
    unknown = sorted(set(fields) - {login.field for login in LOGINS})
    if unknown:
        raise ValueError(f"not password fields: {unknown}")
    return replace(secrets, **fields).with_role_passwords(roles)


def previous_of(secrets: Secrets, logins: Iterable[Login]) -> dict[str, str]:
    """What rotation.yaml keeps while a rotation runs: the database logins' old passwords
    (a declared role with no password yet has none: it is created with the new one)."""
    return {
        x.field: password_of(secrets, x.field)
        for x in logins
        if x.database and not (x.field.startswith(ROLE_FIELD) and _unset(secrets, x.field))
    }


def _unset(secrets: Secrets, field: str) -> bool:
    return secrets.role_password(field.removeprefix(ROLE_FIELD)) is None


def effective_secrets(secrets: Secrets, previous: Mapping[str, str] | None) -> Secrets:
    """The passwords the cluster uses now: while a role's ALTER ROLE is pending its old
    password stays in the configs and in the operator's logins."""
    if not previous:
        return secrets
    return rotated(secrets, previous)
