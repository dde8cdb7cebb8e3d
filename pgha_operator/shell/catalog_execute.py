"""Performs the actions on declared roles and databases (core/catalog_actions.py) as the
superuser on the primary directly. Each re-checks on the server: a role or database made
meanwhile is not made twice, and PostgreSQL itself refuses a drop that would lose data."""

from __future__ import annotations

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
    SetDatabaseOwner,
)
from pgha_operator.core.errors import OperatorError
from pgha_operator.core.render import SUPERUSER, Secrets
from pgha_operator.shell.clients import Clients, PostgresApi
from pgha_operator.shell.clients.postgres import PRIMARY_TIMEOUT


def perform_catalog(action: CatalogAction, clients: Clients, secrets: Secrets | None) -> None:
    if secrets is None:
        raise OperatorError("no generated superuser password")
    db = _superuser(clients, action.host, action.port, secrets)
    match action:
        case CreateDeclaredRole(role=role, attributes=attributes):
            db.create_role_declared(role, attributes, _password(secrets, role, attributes.login))
        case AlterDeclaredRole(role=role, attributes=attributes, changes=changes):
            # A role that becomes a login role gets its generated password with the change.
            becomes_login = "login" in changes
            password = _password(secrets, role, attributes.login) if becomes_login else None
            db.alter_role_declared(role, attributes, password)
        case GrantMembership(role=role, group=group):
            db.grant_membership(role, group)
        case RevokeMembership(role=role, group=group):
            db.revoke_membership(role, group)
        case DropDeclaredRole(role=role):
            db.drop_role(role)
        case CreateDeclaredDatabase(name=name, owner=owner, encoding=encoding, locale=locale):
            db.create_database_declared(name, owner, encoding, locale)
        case SetDatabaseOwner(name=name, owner=owner):
            db.set_database_owner(name, owner)
        case CreateExtension(database=database, extension=extension):
            db.create_extension(database, extension)
        case DropDeclaredDatabase(name=name):
            db.drop_database(name)


def _password(secrets: Secrets, role: str, login: bool) -> str | None:
    if not login:
        return None
    password = secrets.role_password(role)
    if password is None:
        raise OperatorError(f"no generated password for role {role} (secrets.yaml, roles:)")
    return password


def _superuser(clients: Clients, host: str, port: int, secrets: Secrets) -> PostgresApi:
    # The observation's client (same timeout): its kept connection is not closed for this.
    return clients.postgres(
        host, port, SUPERUSER, secrets.superuser_password, timeout=PRIMARY_TIMEOUT
    )
