"""Declared roles and databases (`spec.postgres.roles`, `spec.postgres.databases`): each
entry checks its own fields here; rules across entries live in catalog_rules.py."""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from pgha_operator.core.spec.patterns import LOCALE_PATTERN, SQL_NAME_PATTERN
from pgha_operator.core.spec.pg15_extensions import PG15_EXTENSIONS

# Names the operator's own logins use (core/render/context.py) or PostgreSQL keeps for
# itself: a declared role may not take them over.
OPERATOR_ROLES = frozenset({"postgres", "replicator", "admin", "app", "patroni", "stats"})
RESERVED_ROLES = OPERATOR_ROLES | {"public", "none"}
# The operator's `app` database and PostgreSQL's own.
RESERVED_DATABASES = frozenset({"postgres", "template0", "template1", "app"})
# PostgreSQL 15's predefined roles a declared role may be a member of. The ones that read or
# write the server's files or run programs (pg_read_server_files, pg_write_server_files,
# pg_execute_server_program) are left out: each is as good as superuser.
GRANTABLE_PREDEFINED = frozenset(
    {
        "pg_checkpoint",
        "pg_monitor",
        "pg_read_all_data",
        "pg_read_all_settings",
        "pg_read_all_stats",
        "pg_signal_backend",
        "pg_stat_scan_tables",
        "pg_write_all_data",
    }
)
# The server encodings PostgreSQL 15 can create a database in (client-only ones left out).
SERVER_ENCODINGS = frozenset(
    {
        "SQL_ASCII", "UTF8", "EUC_JP", "EUC_CN", "EUC_KR", "EUC_TW", "EUC_JIS_2004",
        "LATIN1", "LATIN2", "LATIN3", "LATIN4", "LATIN5", "LATIN6", "LATIN7", "LATIN8",
        "LATIN9", "LATIN10", "ISO_8859_5", "ISO_8859_6", "ISO_8859_7", "ISO_8859_8",
        "WIN866", "WIN874", "WIN1250", "WIN1251", "WIN1252", "WIN1253", "WIN1254",
        "WIN1255", "WIN1256", "WIN1257", "WIN1258", "KOI8R", "KOI8U", "MULE_INTERNAL",
    }
)  # fmt: skip
# Attributes a manifest may not give a role, and why.
REFUSED_ATTRIBUTES = {
    "superuser": "a declared role is never a superuser: the operator keeps that to itself",
    "replication": "replication is the operator's own role (replicator)",
    "createrole": "a role that creates roles can grant itself any declared role's rights",
    "bypassrls": "a declared role never bypasses row-level security",
}

SqlName = Annotated[str, Field(pattern=SQL_NAME_PATTERN)]
Ensure = Literal["present", "absent"]


class _Entry(BaseModel):
    """As every manifest model: unknown fields refused, frozen, camelCase in the YAML."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True
    )


class RoleSpec(_Entry):
    """A role the operator creates and keeps as declared. A login role gets a generated
    password (secrets.yaml) and a passfile in the state dir."""

    name: SqlName
    login: Annotated[bool, Strict()] = True
    createdb: Annotated[bool, Strict()] = False
    connection_limit: Annotated[int, Strict(), Field(ge=-1)] = -1  # -1: no limit
    member_of: tuple[SqlName, ...] = ()
    ensure: Ensure = "present"

    @model_validator(mode="before")
    @classmethod
    def _no_power(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, why in REFUSED_ATTRIBUTES.items():
                if key in data:
                    raise ValueError(f"{key!r} cannot be set: {why}")
        return data

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name in OPERATOR_ROLES:
            raise ValueError(f"{name!r} is a role the operator uses itself; choose another name")
        if name in RESERVED_ROLES or name.startswith("pg_"):
            raise ValueError(f"{name!r} is reserved by PostgreSQL; choose another name")
        return name


def _installed(name: str) -> str:
    if name not in PG15_EXTENSIONS:
        raise ValueError(
            f"{name!r} is not an extension of PostgreSQL 15's contrib set"
            + _near(name, PG15_EXTENSIONS)
        )
    return name


ExtensionName = Annotated[str, AfterValidator(_installed)]


class DatabaseSpec(_Entry):
    """A database the operator creates and keeps as declared. Encoding and locale are fixed
    when it is created (PostgreSQL cannot change them); extensions are created in it."""

    name: SqlName
    owner: SqlName
    encoding: str = "UTF8"
    locale: Annotated[str, Field(pattern=LOCALE_PATTERN)] | None = None  # None: the cluster's
    extensions: tuple[ExtensionName, ...] = ()
    ensure: Ensure = "present"

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name in RESERVED_DATABASES:
            raise ValueError(f"{name!r} is a database the operator or PostgreSQL keeps")
        return name

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, encoding: str) -> str:
        spelled = encoding.upper().replace("-", "")
        if spelled not in SERVER_ENCODINGS:
            raise ValueError(
                f"{encoding!r} is not a PostgreSQL server encoding"
                + _near(spelled, SERVER_ENCODINGS)
            )
        return spelled


def _near(word: str, known: frozenset[str]) -> str:
    close = difflib.get_close_matches(word, sorted(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def declared_logins(roles: tuple[RoleSpec, ...]) -> tuple[str, ...]:
    """The declared roles that log in (and so get a password and a passfile)."""
    return tuple(r.name for r in roles if r.ensure == "present" and r.login)
