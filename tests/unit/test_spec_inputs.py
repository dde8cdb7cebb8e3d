"""Hardened inputs (#12): parameter names and values that postgresql.conf cannot hold or the
operator owns, plaintext and file-including pg_hba rules, and the superuser-through-the-load-
balancer opt-in. Each refusal names file, field, reason and line, through `validate` too."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pgha_operator.cli import main
from pgha_operator.core.spec import HbaRule, load, parse_text
from pgha_operator.core.spec.pg15_settings import PG15_SETTINGS
from pgha_operator.core.spec.problems import path_part
from pgha_operator.core.spec.yaml_nodes import split_path
from tests.unit.test_spec import DEMO, MANIFESTS, add_to, edit, line_of, only_problem, with_hba

POSTGRES_15 = "/usr/lib/postgresql/15/bin/postgres"
EVIL_KEY = "zz.x = 'y'\nhba_file"


def with_parameter(line: str) -> str:
    return add_to("    parameters:", f"      {line}")


def with_postgres(line: str) -> str:
    return edit('    synchronous: "off"', f'    synchronous: "off"\n    {line}')


P = "spec.postgres.parameters"

# (id, manifest text, field path, key words of the reason, the line's needle)
BAD: list[tuple[str, str, str, list[str], str]] = [
    (
        "parameter-key-writes-a-second-line",
        with_parameter("\"zz.x = 'y'\\nhba_file\": /tmp/evil_hba"),
        f"{P}.{EVIL_KEY!r}",
        ["is not a PostgreSQL parameter name", "namespace.name"],
        "/tmp/evil_hba",
    ),
    (
        "parameter-key-with-space",
        with_parameter('"work mem": 4MB'),
        f"{P}.'work mem'",
        ["is not a PostgreSQL parameter name"],
        "work mem",
    ),
    (
        "parameter-key-twice-qualified",
        with_parameter("a.b.c: 1"),
        f"{P}.'a.b.c'",
        ["is not a PostgreSQL parameter name"],
        "a.b.c",
    ),
    (
        "parameter-key-starts-with-digit",
        with_parameter("1work_mem: 4MB"),
        f"{P}.1work_mem",
        ["is not a PostgreSQL parameter name"],
        "1work_mem",
    ),
    (
        "parameter-typo",
        with_parameter("max_conections: 100"),
        f"{P}.max_conections",
        ["is not a PostgreSQL 15 setting", "did you mean 'max_connections'"],
        "max_conections",
    ),
    (
        "parameter-unknown",
        with_parameter("frobnicate: 1"),
        f"{P}.frobnicate",
        ["is not a PostgreSQL 15 setting", "namespace.name"],
        "frobnicate",
    ),
    (
        "parameter-developer-option",
        with_parameter("zero_damaged_pages: true"),
        f"{P}.zero_damaged_pages",
        ["is not a PostgreSQL 15 setting"],
        "zero_damaged_pages",
    ),
    (
        "parameter-ssl",
        with_parameter('ssl: "off"'),
        f"{P}.ssl",
        ["cannot be set here", "manages TLS", "certificates"],
        "ssl:",
    ),
    (
        "parameter-ssl-file",
        with_parameter("ssl_cert_file: /tmp/mine.crt"),
        f"{P}.ssl_cert_file",
        ["cannot be set here", "manages TLS"],
        "ssl_cert_file",
    ),
    (
        "parameter-ssl-upper-case",
        with_parameter("SSL_Min_Protocol_Version: TLSv1"),
        f"{P}.SSL_Min_Protocol_Version",
        ["cannot be set here", "manages TLS"],
        "SSL_Min",
    ),
    (
        "parameter-managed-mixed-case",
        with_parameter("Hba_File: /tmp/evil_hba"),
        f"{P}.Hba_File",
        ["cannot be set here", "spec.postgres.hba"],
        "Hba_File",
    ),
    (
        "parameter-value-newline",
        with_parameter("work_mem: \"4MB\\nhba_file = '/tmp/evil_hba'\""),
        f"{P}.work_mem",
        ["control character '\\n' at position 3", "unterminated", "refuses to start"],
        "work_mem",
    ),
    (
        "parameter-value-carriage-return",
        with_parameter('application_name: "a\\rb"'),
        f"{P}.application_name",
        ["control character '\\r' at position 1"],
        "application_name",
    ),
    (
        "parameter-value-nul",
        with_parameter('application_name: "a\\0"'),
        f"{P}.application_name",
        ["control character '\\x00'"],
        "application_name",
    ),
    (
        "parameter-value-tab",
        with_parameter('log_line_prefix: "%m\\t"'),
        f"{P}.log_line_prefix",
        ["control character '\\t'"],
        "log_line_prefix",
    ),
    (
        "parameter-value-del",
        with_parameter('application_name: "a\\x7f"'),
        f"{P}.application_name",
        ["control character '\\x7f'"],
        "application_name",
    ),
    (
        "parameter-two-spellings",
        with_parameter("Max_Connections: 100"),
        f"{P}.max_connections",
        ["is also set as 'Max_Connections'", "any case"],
        "max_connections: 200",
    ),
    (
        "hba-host-is-plaintext",
        with_hba("{type: host, address: 10.0.0.0/8}"),
        "spec.postgres.hba.0",
        ["'host' rule", "plaintext", "use type 'hostssl'", "only with method 'reject'"],
        "type: host",
    ),
    (
        "hba-hostnossl-is-plaintext",
        with_hba("{type: hostnossl, address: 0.0.0.0/0, method: scram-sha-256}"),
        "spec.postgres.hba.0",
        ["'hostnossl' rule", "plaintext", "hostssl"],
        "type: hostnossl",
    ),
    (
        "hba-database-file",
        with_hba("{database: '@dbs', address: 10.0.0.0/8}"),
        "spec.postgres.hba.0.database",
        ["includes a file ('@...')", "list the names"],
        "@dbs",
    ),
    (
        "hba-user-file-in-a-list",
        with_hba("{user: 'alice,@admins', address: 10.0.0.0/8}"),
        "spec.postgres.hba.0.user",
        ["'alice,@admins' includes a file"],
        "@admins",
    ),
    (
        "superuser-through-lb-not-a-bool",
        with_postgres('superuserThroughLoadBalancer: "yes"'),
        "spec.postgres.superuserThroughLoadBalancer",
        ["expected true or false", "'yes'"],
        "superuserThroughLoadBalancer",
    ),
]


@pytest.mark.parametrize(
    ("text", "path", "words", "needle"), [c[1:] for c in BAD], ids=[c[0] for c in BAD]
)
def test_bad_input_is_refused_with_file_field_reason_and_line(
    text: str, path: str, words: list[str], needle: str
) -> None:
    problem = only_problem(text)
    assert (problem.file, problem.path) == ("bad.yaml", path)
    for word in words:
        assert word in problem.reason, f"{word!r} not in {problem.reason!r}"
    assert problem.line == line_of(text, needle)
    assert "\n" not in str(problem)  # a key or value with a newline stays on one line


def test_the_evil_key_no_longer_validates() -> None:
    """The key that made Patroni write a second line `hba_file = '/tmp/evil_hba'`."""
    text = with_parameter("\"zz.x = 'y'\\nhba_file\": /tmp/evil_hba")
    assert EVIL_KEY in text.encode().decode("unicode_escape")  # the YAML holds the exploit
    clusters, problems = parse_text(text, "evil.yaml")
    assert clusters == [] and len(problems) == 1
    assert problems[0].path == f"spec.postgres.parameters.{EVIL_KEY!r}"


def test_several_bad_parameters_are_reported_together() -> None:
    text = with_parameter('ssl: true\n      max_conections: 10\n      work_mem: "1\\n"')
    _, problems = parse_text(text, "bad.yaml")
    assert sorted(p.path for p in problems) == [f"{P}.max_conections", f"{P}.ssl", f"{P}.work_mem"]


@pytest.mark.parametrize(
    "line",
    [
        "TimeZone: UTC",
        "timezone: UTC",
        "DateStyle: ISO, MDY",
        "pg_stat_statements.max: 1000",
        "_my.setting: x",
        'shared_preload_libraries: "pg_stat_statements"',
        "log_line_prefix: '%m [%p] '",
        "archive_timeout: 60",
        "application_name: naïve",
    ],
)
def test_real_settings_are_accepted(line: str) -> None:
    clusters, problems = parse_text(with_parameter(line), "ok.yaml")
    assert problems == [] and len(clusters) == 1


@pytest.mark.parametrize(
    "rule",
    [
        "{type: host, address: 10.0.0.0/8, method: reject}",
        "{type: hostnossl, address: 0.0.0.0/0, method: reject}",
        "{type: hostssl, address: 10.0.0.0/8}",
        "{address: 10.0.0.0/8, user: 'alice@example.com,bob'}",
        "{type: local, user: postgres, method: peer}",
    ],
)
def test_safe_hba_rules_are_accepted(rule: str) -> None:
    clusters, problems = parse_text(with_hba(rule), "ok.yaml")
    assert problems == [] and len(clusters) == 1


def test_hba_rules_default_to_hostssl() -> None:
    (loaded,) = parse_text(with_hba("{address: 10.0.0.0/8}"), "ok.yaml")[0]
    (rule,) = loaded.cluster.spec.postgres.hba
    assert rule == HbaRule(type="hostssl", address="10.0.0.0/8")  # type: ignore[arg-type]


def test_superuser_through_the_load_balancer_is_off_and_silent_by_default() -> None:
    (demo,) = load(MANIFESTS / "demo.yaml")
    assert demo.cluster.spec.postgres.superuser_through_load_balancer is False
    assert demo.warnings == ()


def test_superuser_through_the_load_balancer_opt_in_warns() -> None:
    (loaded,) = parse_text(with_postgres("superuserThroughLoadBalancer: true"), "m.yaml")[0]
    assert loaded.cluster.spec.postgres.superuser_through_load_balancer is True
    (warning,) = loaded.warnings
    assert warning.startswith("m.yaml: spec.postgres.superuserThroughLoadBalancer: ")
    assert "superuser (postgres) can log in through the load balancer" in warning


def test_validate_prints_the_opt_in_warning_and_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "optin.yaml"
    manifest.write_text(with_postgres("superuserThroughLoadBalancer: true"))
    assert main(["validate", "-f", str(manifest)]) == 0
    out, err = capsys.readouterr()
    assert "is valid" in out
    assert f"warning: {manifest}: spec.postgres.superuserThroughLoadBalancer:" in err


def test_validate_refuses_the_evil_key_naming_file_field_and_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "evil.yaml"
    manifest.write_text(with_parameter("\"zz.x = 'y'\\nhba_file\": /tmp/evil_hba"))
    assert main(["validate", "-f", str(manifest)]) == 2
    err = capsys.readouterr().err
    line = line_of(manifest.read_text(), "/tmp/evil_hba")
    assert f"{manifest}:{line}: spec.postgres.parameters.{EVIL_KEY!r}: " in err
    assert "is not a PostgreSQL parameter name" in err


@pytest.mark.parametrize("key", ["max_connections", "pg.x", EVIL_KEY, "a\"b'c\\", "", "'x"])
def test_a_quoted_path_part_splits_back_into_its_key(key: str) -> None:
    assert split_path(f"spec.postgres.parameters.{path_part(key)}") == [
        "spec",
        "postgres",
        "parameters",
        key,
    ]


def test_shipped_manifests_use_no_plaintext_hba_rule() -> None:
    for item in load([MANIFESTS]):
        for rule in item.cluster.spec.postgres.hba:
            assert rule.type in ("hostssl", "local") or rule.method == "reject", item.source


@pytest.mark.skipif(not os.access(POSTGRES_15, os.X_OK), reason="PostgreSQL 15 not installed")
def test_the_shipped_settings_are_postgres_15s() -> None:
    """pg15_settings.py is generated by scripts/pg15_settings.py; regenerate it if this fails."""
    # --describe-config only prints (it runs as root too, unlike the server).
    command = [POSTGRES_15, "--describe-config"]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    described = {line.split("\t", 1)[0] for line in out.splitlines() if line.strip()}
    assert len(described) > 250
    assert set(PG15_SETTINGS) == described


def test_demo_still_loads() -> None:
    assert parse_text(DEMO, "demo.yaml")[1] == []
