"""Actions on declared roles and databases (spec.postgres.roles/databases): each runs as the
superuser on the primary at host:port, directly (never through the load balancer)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RoleAttributes:
    login: bool
    createdb: bool
    connection_limit: int  # -1: no limit

    @property
    def describe(self) -> str:
        words = ["login" if self.login else "nologin"]
        words.append("createdb" if self.createdb else "nocreatedb")
        limit = "no limit" if self.connection_limit < 0 else str(self.connection_limit)
        return ", ".join([*words, f"connection limit {limit}"])


@dataclass(frozen=True)
class CreateDeclaredRole:
    """A login role is made with its generated password (secrets.yaml)."""

    role: str
    attributes: RoleAttributes
    host: str
    port: int
    barrier: bool = False

    @property
    def describe(self) -> str:
        return f"create role {self.role} ({self.attributes.describe}) on the primary"


@dataclass(frozen=True)
class AlterDeclaredRole:
    """Attributes to match the manifest; a role that becomes a login role gets its password."""

    role: str
    attributes: RoleAttributes
    changes: tuple[str, ...]  # what differs, for the description
    host: str
    port: int
    barrier: bool = False

    @property
    def describe(self) -> str:
        return f"alter role {self.role}: {', '.join(self.changes)}"


@dataclass(frozen=True)
class GrantMembership:
    role: str
    group: str
    host: str
    port: int
    barrier: bool = False

    @property
    def describe(self) -> str:
        return f"grant {self.group} to {self.role}"


@dataclass(frozen=True)
class RevokeMembership:
    role: str
    group: str
    host: str
    port: int
    barrier: bool = False

    @property
    def describe(self) -> str:
        return f"revoke {self.group} from {self.role}"


@dataclass(frozen=True)
class DropDeclaredRole:
    """Only for `ensure: absent`, and only a role that owns nothing and holds no privilege."""

    role: str
    host: str
    port: int
    barrier: bool = False

    @property
    def describe(self) -> str:
        return f"drop role {self.role} (ensure: absent)"


@dataclass(frozen=True)
class CreateDeclaredDatabase:
    name: str
    owner: str
    encoding: str
    locale: str | None  # None: the cluster's
    host: str
    port: int
    barrier: bool = False

    @property
    def describe(self) -> str:
        locale = f", locale {self.locale}" if self.locale else ""
        return f"create database {self.name} (owner {self.owner}, {self.encoding}{locale})"


@dataclass(frozen=True)
class SetDatabaseOwner:
    name: str
    owner: str
    host: str
    port: int
    barrier: bool = False

    @property
    def describe(self) -> str:
        return f"alter database {self.name} owner to {self.owner}"


@dataclass(frozen=True)
class CreateExtension:
    database: str
    extension: str
    host: str
    port: int
    barrier: bool = False

    @property
    def describe(self) -> str:
        return f"create extension {self.extension} in database {self.database}"


@dataclass(frozen=True)
class DropDeclaredDatabase:
    """Only for `ensure: absent`, and only a database nobody is connected to."""

    name: str
    host: str
    port: int
    barrier: bool = False

    @property
    def describe(self) -> str:
        return f"drop database {self.name} (ensure: absent)"


CatalogAction = (
    CreateDeclaredRole
    | AlterDeclaredRole
    | GrantMembership
    | RevokeMembership
    | DropDeclaredRole
    | CreateDeclaredDatabase
    | SetDatabaseOwner
    | CreateExtension
    | DropDeclaredDatabase
)
CATALOG_ACTIONS = (
    CreateDeclaredRole,
    AlterDeclaredRole,
    GrantMembership,
    RevokeMembership,
    DropDeclaredRole,
    CreateDeclaredDatabase,
    SetDatabaseOwner,
    CreateExtension,
    DropDeclaredDatabase,
)
