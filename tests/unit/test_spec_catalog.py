"""spec.postgres.roles and spec.postgres.databases: what `validate` refuses (file, field,
reason, line), what it accepts, and the shipped extension list against the installed one."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgha_operator.core.spec import parse_text
from pgha_operator.core.spec.catalog import declared_logins
from pgha_operator.core.spec.pg15_extensions import PG15_EXTENSIONS
from scripts.pg15_extensions import control_names
from tests.unit.test_spec import edit, line_of, only_problem

EXTENSION_DIR = Path("/usr/share/postgresql/15/extension")
GOOD = """    roles:
      - {name: reporting, connectionLimit: 5, memberOf: [readers, pg_monitor, app]}
      - {name: readers, login: false}
      - {name: shop_owner, createdb: true}
      - {name: leaver, ensure: absent}
    databases:
      - {name: shop, owner: shop_owner, extensions: [pg_trgm, pgcrypto]}
      - {name: reports, owner: app, encoding: utf-8, locale: C.UTF-8}
      - {name: old_db, owner: nobody_needed, ensure: absent}"""


def declaring(block: str) -> str:
    return edit('    synchronous: "off"', f'    synchronous: "off"\n{block}')


def test_a_good_declaration_is_accepted_with_defaults() -> None:
    clusters, problems = parse_text(declaring(GOOD), "good.yaml")
    assert problems == []
    postgres = clusters[0].cluster.spec.postgres
    reporting = postgres.roles[0]
    assert (reporting.login, reporting.createdb, reporting.connection_limit) == (True, False, 5)
    assert postgres.databases[1].encoding == "UTF8"  # spelled as PostgreSQL spells it
    assert declared_logins(postgres.roles) == ("reporting", "shop_owner")


# (id, declaration, field path, words of the reason, the line's needle)
BAD = [
    ("bad-name", "    roles:\n      - {name: Bad-Name}", "spec.postgres.roles.0.name",
     ["is not a valid name", "lowercase"], "Bad-Name"),
    ("operator-role", "    roles:\n      - {name: replicator}", "spec.postgres.roles.0.name",
     ["the operator uses itself"], "replicator"),
    ("app-role", "    roles:\n      - {name: app}", "spec.postgres.roles.0.name",
     ["the operator uses itself"], "name: app"),
    ("pg-prefix", "    roles:\n      - {name: pg_mine}", "spec.postgres.roles.0.name",
     ["reserved by PostgreSQL"], "pg_mine"),
    ("superuser", "    roles:\n      - {name: boss, superuser: true}", "spec.postgres.roles.0",
     ["'superuser' cannot be set", "never a superuser"], "boss"),
    ("createrole", "    roles:\n      - {name: boss, createrole: true}",
     "spec.postgres.roles.0", ["'createrole' cannot be set"], "boss"),
    ("negative-limit", "    roles:\n      - {name: r, connectionLimit: -2}",
     "spec.postgres.roles.0.connectionLimit", ["too small", "-1"], "connectionLimit"),
    ("role-twice", "    roles:\n      - {name: r}\n      - {name: r, login: false}",
     "spec.postgres.roles.1.name", ["also declared at spec.postgres.roles.0"], "login: false"),
    ("member-of-undeclared", "    roles:\n      - {name: r, memberOf: [ghost]}",
     "spec.postgres.roles.0.memberOf.0", ["'ghost' is not declared"], "ghost"),
    ("member-of-powerful", "    roles:\n      - {name: r, memberOf: [pg_read_server_files]}",
     "spec.postgres.roles.0.memberOf.0", ["not a predefined role a declared role may join"],
     "pg_read_server_files"),
    ("member-of-self", "    roles:\n      - {name: r, memberOf: [r]}",
     "spec.postgres.roles.0.memberOf.0", ["member of itself"], "memberOf"),
    ("member-of-absent",
     "    roles:\n      - {name: r, memberOf: [g]}\n      - {name: g, ensure: absent}",
     "spec.postgres.roles.0.memberOf.0", ["ensure: absent"], "memberOf"),
    ("membership-loop",
     "    roles:\n      - {name: a, memberOf: [b]}\n      - {name: b, memberOf: [a]}",
     "spec.postgres.roles.0.memberOf", ["membership loop"], "name: a"),
    ("reserved-database", "    databases:\n      - {name: template1, owner: app}",
     "spec.postgres.databases.0.name", ["keeps"], "template1"),
    ("database-twice",
     "    databases:\n      - {name: d, owner: app}\n      - {name: d, owner: app, encoding: UTF8}",
     "spec.postgres.databases.1.name", ["also declared at spec.postgres.databases.0"],
     "encoding: UTF8"),
    ("owner-undeclared", "    databases:\n      - {name: d, owner: nobody}",
     "spec.postgres.databases.0.owner", ["'nobody' is not declared", "or 'app'"], "nobody"),
    ("owner-dropped",
     "    roles:\n      - {name: o, ensure: absent}\n    databases:\n      - {name: d, owner: o}",
     "spec.postgres.databases.0.owner", ["ensure: absent"], "owner: o"),
    ("unknown-extension", "    databases:\n      - {name: d, owner: app, extensions: [postgis]}",
     "spec.postgres.databases.0.extensions.0", ["not an extension of PostgreSQL 15's contrib"],
     "postgis"),
    ("misspelt-extension",
     "    databases:\n      - {name: d, owner: app, extensions: [pg_trgm, pgcrypt]}",
     "spec.postgres.databases.0.extensions.1", ["did you mean 'pgcrypto'?"], "pgcrypt"),
    ("extension-twice",
     "    databases:\n      - {name: d, owner: app, extensions: [hstore, hstore]}",
     "spec.postgres.databases.0.extensions.1", ["listed twice"], "hstore"),
    ("bad-encoding", "    databases:\n      - {name: d, owner: app, encoding: KLINGON}",
     "spec.postgres.databases.0.encoding", ["not a PostgreSQL server encoding"], "KLINGON"),
    ("bad-locale", "    databases:\n      - {name: d, owner: app, locale: \"en US\"}",
     "spec.postgres.databases.0.locale", ["is not a locale name"], "en US"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("block", "path", "words", "needle"), [c[1:] for c in BAD], ids=[c[0] for c in BAD]
)
def test_a_bad_declaration_is_refused_with_field_reason_and_line(
    block: str, path: str, words: list[str], needle: str
) -> None:
    text = declaring(block)
    problem = only_problem(text)
    assert problem.file == "bad.yaml"
    assert problem.path == path
    for word in words:
        assert word in problem.reason, problem.reason
    assert problem.line == line_of(text, needle)


def test_the_shipped_extension_list_is_the_installed_contrib_set() -> None:
    if not EXTENSION_DIR.is_dir():
        pytest.skip("PostgreSQL 15 is not installed here")
    assert sorted(PG15_EXTENSIONS) == control_names(EXTENSION_DIR), "run scripts/pg15_extensions.py"
